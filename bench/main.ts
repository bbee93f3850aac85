import { setLogLevel } from '../src/log.js';
import { benchContainers } from './containers.js';
import { benchPulls } from './images.js';
import { benchRestart } from './restart.js';
import { benchSandboxes } from './sandbox.js';
import { withBenchRuntime } from './setup.js';
import { benchStreaming } from './streaming.js';

/** `npm run bench`: speed and memory, printed as tables. Needs root (it makes real pods). */
async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('npm run bench needs root: it creates real pods (namespaces, mounts, cgroups, a bridge)');
    process.exitCode = 1;
    return;
  }
  setLogLevel('warn');
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
