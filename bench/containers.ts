import { ContainerConfig, PodSandboxConfig } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import type { Runtime } from '../src/server/runtime.js';
import { ms, percentile, printTable, rssKiB } from './stats.js';

/**
 * CreateContainer+StartContainer and ExecSync latency: `count` containers in one pod
 * (overlay rootfs, cgroup, nsexec into the pod's namespaces), then `count` execs of `true`.
 */
export async function benchContainers(runtime: Runtime, count: number): Promise<void> {
  await runtime.images.pull(BUILTIN_BUSYBOX_IMAGE, undefined, new AbortController().signal);
  const pod = await runtime.sandboxes.run(
    PodSandboxConfig.fromPartial({ metadata: { name: 'bench-c', namespace: 'bench', uid: 'bench-c-uid' } }),
    '',
  );
  const startMs: number[] = [];
  const execMs: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const config = ContainerConfig.fromPartial({
      metadata: { name: `c${i}` },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sleep', '3600'],
    });
    const started = performance.now();
    const container = await runtime.containers.create(pod.id, config);
    await runtime.containers.start(container.id);
    startMs.push(performance.now() - started);
    ids.push(container.id);
  }
  // The monitor nsexec leaves beside each container (signals, exit file, held pipes).
  const monitors: number[] = [];
  const monitorsOwn: number[] = [];
  for (const id of ids) {
    const pid = runtime.containers.store.get(id).process?.pid;
    if (pid === undefined) continue;
    monitors.push(await rssKiB(pid));
    monitorsOwn.push(await rssKiB(pid, 'RssAnon'));
  }
  const target = ids[0] ?? '';
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await runtime.containers.execSync(target, ['true'], 5);
    execMs.push(performance.now() - started);
  }
  printTable(
    `Containers: ${count} in one pod, one at a time (${BUILTIN_BUSYBOX_IMAGE}, overlay rootfs, cgroup, nsexec)`,
    ['operation', 'p50', 'p99', 'max'],
    [
      ['CreateContainer + StartContainer', ms(percentile(startMs, 50)), ms(percentile(startMs, 99)), ms(Math.max(...startMs))],
      ['ExecSync `true`', ms(percentile(execMs, 50)), ms(percentile(execMs, 99)), ms(Math.max(...execMs))],
    ],
  );
  printTable(
    "Memory beside each container (RSS counts nsexec's code, which all monitors share; RssAnon is each one's own)",
    ['process', 'RSS p50', 'RssAnon p50', 'RssAnon max'],
    [
      [
        'nsexec monitor',
        `${String(percentile(monitors, 50))} KiB`,
        `${String(percentile(monitorsOwn, 50))} KiB`,
        `${String(Math.max(...monitorsOwn))} KiB`,
      ],
    ],
  );
}
