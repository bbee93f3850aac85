import { parseArgs } from 'node:util';
import { setLogLevel } from '../src/log.js';
import { benchAgainstContainerd } from './against.js';
import { benchContainers } from './containers.js';
import { benchPulls } from './images.js';
import { benchRestart } from './restart.js';
import { benchSandboxes } from './sandbox.js';
import { withBenchRuntime } from './setup.js';
import { benchStreaming } from './streaming.js';

/**
 * `npm run bench`: speed and memory, printed as tables. Needs root (it makes real pods).
 * `npm run bench -- --against containerd [--rounds N] [--pods N] [--list-pods N] [--clients N]
 * [--per-client N] [--json FILE]`: icetray beside containerd and the floor, over their sockets.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      against: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      pods: { type: 'string', default: '10' },
      'list-pods': { type: 'string', default: '50' },
      clients: { type: 'string', default: '8' },
      'per-client': { type: 'string', default: '4' },
      json: { type: 'string', default: '/tmp/icetray-bench.json' },
    },
  });
  if (process.getuid?.() !== 0) {
    console.error('npm run bench needs root: it creates real pods (namespaces, mounts, cgroups, a bridge)');
    process.exitCode = 1;
    return;
  }
  setLogLevel('warn');
  if (values.against !== undefined) {
    if (values.against !== 'containerd') throw new Error(`--against ${values.against}: only containerd is known`);
    await benchAgainstContainerd({
      rounds: Number(values.rounds),
      pods: Number(values.pods),
      listPods: Number(values['list-pods']),
      clients: Number(values.clients),
      perClient: Number(values['per-client']),
      json: values.json,
    });
    return;
  }
  const pods = Number(process.env['ICETRAY_BENCH_PODS'] ?? 100);
  const containers = Number(process.env['ICETRAY_BENCH_CONTAINERS'] ?? 50);
  await withBenchRuntime(async (runtime) => {
    await benchSandboxes(runtime, pods);
    await benchContainers(runtime, containers);
    await benchStreaming(runtime, Number(process.env['ICETRAY_BENCH_STREAMS'] ?? 20));
  });
  await benchPulls(Number(process.env['ICETRAY_BENCH_PULLS'] ?? 5));
  await benchRestart(Number(process.env['ICETRAY_BENCH_RESTART_PODS'] ?? 50));
}

await main();
