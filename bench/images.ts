import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { withBenchRuntime } from './setup.js';
import { ms, percentile, printTable } from './stats.js';

const IMAGE = 'e2e-test-images/nginx:1.14-2';
const PORT = '5066';

function sh(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

/**
 * Pulling a multi-layer image (busybox base + web server layer) from a loopback registry (the
 * conformance fixtures'), through a
 * registry mirror, next to `skopeo copy` of the same image: icetray also verifies and unpacks
 * every layer, skopeo only downloads and writes the blobs.
 */
export async function benchPulls(rounds: number): Promise<void> {
  const cache = await mkdtemp(join(tmpdir(), 'icetray-bench-fixtures-'));
  const env = { ...process.env, ICETRAY_FIXTURES_CACHE: cache, ICETRAY_REGISTRY_PORT: PORT };
  const fixtures = join(PACKAGE_ROOT, 'conformance', 'fixtures', 'registry.sh');
  const url = await sh('bash', [fixtures, 'up'], env);
  try {
    const skopeoMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const target = await mkdtemp(join(tmpdir(), 'icetray-bench-skopeo-'));
      const started = performance.now();
      await sh('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://127.0.0.1:${PORT}/${IMAGE}`, `oci:${target}:bench`]);
      skopeoMs.push(performance.now() - started);
      await rm(target, { recursive: true, force: true });
    }
    const pullMs: number[] = [];
    await withBenchRuntime(async (runtime) => {
      for (let i = 0; i < rounds; i++) {
        const started = performance.now();
        const image = await runtime.images.pull(`registry.k8s.io/${IMAGE}`, undefined, new AbortController().signal);
        pullMs.push(performance.now() - started);
        await runtime.images.remove(image.id);
      }
    }, `[registry.mirrors."registry.k8s.io"]\nendpoints = ["${url}"]\n`);
    printTable(
      `Pulls: ${IMAGE} from a loopback registry, ${rounds} rounds, nothing cached between rounds`,
      ['tool', 'p50', 'max'],
      [
        ['icetray PullImage (download, verify, unpack)', ms(percentile(pullMs, 50)), ms(Math.max(...pullMs))],
        ['skopeo copy to an OCI layout (download, write)', ms(percentile(skopeoMs, 50)), ms(Math.max(...skopeoMs))],
      ],
    );
  } finally {
    await sh('bash', [fixtures, 'down'], env).catch(() => undefined);
    await rm(cache, { recursive: true, force: true });
  }
}
