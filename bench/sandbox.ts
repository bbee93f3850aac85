import { PodSandboxConfig } from '../src/generated/api.js';
import type { Runtime } from '../src/server/runtime.js';
import { ms, percentile, printTable, rssKiB } from './stats.js';

/**
 * RunPodSandbox and StopPodSandbox+RemovePodSandbox latency over `count` pods (pause, pins,
 * shm, cgroups, CNI bridge + portmap), ListPodSandbox time, and the memory of one pause.
 */
export async function benchSandboxes(runtime: Runtime, count: number): Promise<void> {
  const runMs: number[] = [];
  const removeMs: number[] = [];
  const ids: string[] = [];
  let pauseRss = Number.NaN;
  for (let i = 0; i < count; i++) {
    const config = PodSandboxConfig.fromPartial({
      metadata: { name: `bench-${i}`, namespace: 'bench', uid: `bench-uid-${i}`, attempt: 0 },
    });
    const started = performance.now();
    const sandbox = await runtime.sandboxes.run(config, '');
    runMs.push(performance.now() - started);
    ids.push(sandbox.id);
    if (i === 0 && sandbox.pause !== undefined) pauseRss = await rssKiB(sandbox.pause.pid);
  }
  const listStarted = performance.now();
  await runtime.sandboxes.list();
  const listMs = performance.now() - listStarted;
  for (const id of ids) {
    const started = performance.now();
    await runtime.sandboxes.stop(id, (sandboxId) => runtime.containers.stopAll(sandboxId, false));
    await runtime.sandboxes.remove(id, (sandboxId) => runtime.containers.stopAll(sandboxId, true));
    removeMs.push(performance.now() - started);
  }
  printTable(
    `Pod sandboxes: ${count} pods, one at a time (pause, pinned namespaces, shm, cgroups, CNI bridge/portmap)`,
    ['operation', 'p50', 'p99', 'max'],
    [
      ['RunPodSandbox', ms(percentile(runMs, 50)), ms(percentile(runMs, 99)), ms(Math.max(...runMs))],
      [
        'StopPodSandbox + RemovePodSandbox',
        ms(percentile(removeMs, 50)),
        ms(percentile(removeMs, 99)),
        ms(Math.max(...removeMs)),
      ],
      [`ListPodSandbox with ${count} pods`, ms(listMs), '', ''],
    ],
  );
  printTable('Memory', ['what', 'RSS'], [['one pause process (VmRSS)', `${pauseRss} KiB`]]);
}
