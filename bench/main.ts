import { setLogLevel } from '../src/log.js';
import { benchSandboxes } from './sandbox.js';

/** `npm run bench`: speed and memory, printed as tables. Needs root (it makes real pods). */
async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('npm run bench needs root: it creates real pods (namespaces, mounts, a bridge)');
    process.exitCode = 1;
    return;
  }
  setLogLevel('warn');
  const pods = Number(process.env['ICETRAY_BENCH_PODS'] ?? 100);
  await benchSandboxes(pods);
}

await main();
