import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { PodSandboxConfig } from '../src/generated/api.js';
import { run } from '../src/os/exec.js';
import { createRuntime } from '../src/server/runtime.js';
import { ms, percentile, printTable } from './stats.js';

/** The bench's own network: its own bridge and range, removed at the end. */
const BRIDGE = 'itbench0';
const SUBNET = '10.253.0.0/24';

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

/**
 * RunPodSandbox and StopPodSandbox+RemovePodSandbox latency over `count` pods, through the
 * same SandboxService the gRPC handlers call (pause, pins, CNI bridge + portmap), and the
 * memory one pause process takes.
 */
export async function benchSandboxes(count: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'icetray-bench-'));
  const confDir = join(dir, 'net.d');
  await mkdir(confDir, { recursive: true });
  await writeFile(
    join(confDir, '10-bench.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'icetray-bench',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET }]], dataDir: join(dir, 'leases') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  const ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  await writeFile(join(dir, 'config.toml'), '');
  const flags = {
    rootDir: join(dir, 'root'),
    stateDir: join(dir, 'state'),
    cniConfDir: confDir,
    socket: join(dir, 'unused.sock'),
  };
  const runtime = await createRuntime(loadConfig({ file: join(dir, 'config.toml'), flags }));
  const runMs: number[] = [];
  const removeMs: number[] = [];
  const ids: string[] = [];
  let pauseRss = Number.NaN;
  try {
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
      await runtime.sandboxes.stop(id);
      await runtime.sandboxes.remove(id);
      removeMs.push(performance.now() - started);
    }
    printTable(
      `Pod sandboxes: ${count} pods, one at a time (pause + pinned namespaces + CNI bridge/portmap)`,
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
  } finally {
    for (const id of ids) await runtime.sandboxes.remove(id).catch(() => undefined);
    await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    await writeFile('/proc/sys/net/ipv4/ip_forward', ipForward);
    await rm(dir, { recursive: true, force: true });
  }
}
