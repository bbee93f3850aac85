import { Server, ServerCredentials } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageServiceService, RuntimeServiceService, type ImageServiceServer } from '../src/generated/api.js';
import { ImageStore } from '../src/images/store.js';
import { setLogLevel } from '../src/log.js';
import { PACKAGE_ROOT, PAUSE_BINARY } from '../src/paths.js';
import { imageFsInfo } from '../src/server/imagefs-info.js';
import { listImages } from '../src/server/image-list.js';
import { pullImage } from '../src/server/image-pull.js';
import { removeImage } from '../src/server/image-remove.js';
import { imageStatus } from '../src/server/image-status.js';
import { unary, unimplementedStream } from '../src/server/rpc.js';
import type { Runtime } from '../src/server/runtime.js';
import { runtimeService } from '../src/server/services.js';
import { runProgram } from './helpers/cli.js';
import { buildImage, dockerRegistryMissing, startFakeRegistry, type FakeRegistry } from './helpers/registry.js';
import { CRICTL, crictlFlags, crictlMissing, isRoot } from './helpers/tools.js';

const skip = !isRoot ? 'needs root: unpacks layers' : (crictlMissing() ?? dockerRegistryMissing());
const FIXTURES = join(PACKAGE_ROOT, 'conformance', 'fixtures', 'registry.sh');

/** The image service as services.ts wires it, on a socket of its own (Version comes from the runtime service). */
function imageServiceOf(store: ImageStore): ImageServiceServer {
  return {
    listImages: unary('ListImages', (request) => listImages(store, request)),
    streamImages: unimplementedStream('StreamImages'),
    imageStatus: unary('ImageStatus', (request) => imageStatus(store, request)),
    pullImage: unary('PullImage', (request, call) => pullImage(store, request, call)),
    removeImage: unary('RemoveImage', (request) => removeImage(store, request)),
    imageFsInfo: unary('ImageFsInfo', (request) => imageFsInfo(store, request)),
  };
}

describe.skipIf(skip !== undefined)(
  `crictl manages images from the offline fixtures registry (${skip ?? 'root, crictl, docker-registry'})`,
  () => {
    let dir: string;
    let server: Server;
    let secured: FakeRegistry;
    let socket: string;
    const env = (dir: string) => ({ ICETRAY_FIXTURES_CACHE: join(dir, 'fixtures'), ICETRAY_REGISTRY_PORT: '5099' });
    const crictl = (...args: string[]) => runProgram(CRICTL, [...crictlFlags(socket), '--timeout', '30s', ...args], 60_000);

    beforeAll(async () => {
      setLogLevel('silent');
      dir = await mkdtemp(join(tmpdir(), 'icetray-crictl-images-'));
      const up = await runWithEnv(FIXTURES, ['up'], env(dir));
      expect(up.code, up.stderr).toBe(0);
      const url = up.stdout.trim().split('\n').pop() ?? '';
      secured = await startFakeRegistry({ token: { username: 'alice', password: 's3cret' } });
      secured.add('private/app', 'v1', await buildImage({ layers: [[{ name: 'private', content: 'p' }]] }));
      const store = await ImageStore.open({
        root: join(dir, 'images'),
        pauseImage: 'registry.k8s.io/pause:3.10',
        pauseBinary: PAUSE_BINARY,
        registry: { mirrors: { 'registry.k8s.io': [url], 'gcr.io': [url], 'k8s.gcr.io': [url] }, configPath: undefined },
      });
      socket = join(dir, 'icetray.sock');
      server = new Server();
      server.addService(RuntimeServiceService, runtimeService({} as Runtime));
      server.addService(ImageServiceService, imageServiceOf(store));
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
    }, 120_000);
    afterAll(async () => {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await secured.stop();
      await runWithEnv(FIXTURES, ['down'], env(dir));
      await rm(dir, { recursive: true, force: true });
    });

    it('pull, images --digests, inspecti, rmi and imagefsinfo work as with containerd', async () => {
      const pull = await crictl('pull', 'gcr.io/k8s-staging-cri-tools/test-image-user-uid');
      expect(pull.code, pull.stderr).toBe(0);
      expect(pull.stdout).toMatch(/Image is up to date for sha256:[0-9a-f]{64}/);
      const images = await crictl('images', '--digests');
      expect(images.stdout).toMatch(/gcr\.io\/k8s-staging-cri-tools\/test-image-user-uid\s+latest\s+[0-9a-f]{13}\s+[0-9a-f]{13}/);
      const inspect = JSON.parse((await crictl('inspecti', 'gcr.io/k8s-staging-cri-tools/test-image-user-uid')).stdout) as {
        status: { id: string; uid: { value: string }; repoTags: string[] };
        info: { imageSpec: { config: { User: string } } };
      };
      expect(inspect.status.uid.value).toBe('1002');
      expect(inspect.info.imageSpec.config.User).toBe('1002');
      // crictl prints ids cut to 13 characters; they work as references.
      const rmi = await crictl('rmi', inspect.status.id.slice(7, 20));
      expect(rmi.code, rmi.stderr).toBe(0);
      expect((await crictl('images', '-q')).stdout).not.toContain(inspect.status.id);
      const fsinfo = JSON.parse((await crictl('imagefsinfo')).stdout) as {
        status: { imageFilesystems: { usedBytes: { value: string } }[] };
      };
      expect(Number(fsinfo.status.imageFilesystems[0]?.usedBytes.value)).toBeGreaterThan(0);
    });

    it('shows the pause image pinned and refuses to remove it', async () => {
      const listed = JSON.parse((await crictl('images', '-o', 'json')).stdout) as {
        images: { repoTags: string[]; pinned: boolean }[];
      };
      const pause = listed.images.find((i) => i.repoTags.includes('registry.k8s.io/pause:3.10'));
      expect(pause?.pinned).toBe(true);
      const rmi = await crictl('rmi', 'registry.k8s.io/pause:3.10');
      expect(rmi.code).not.toBe(0);
      expect(rmi.stderr).toMatch(/pinned/);
    });

    it('gives registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 one id, and the three test-image-tags one image', async () => {
      for (const ref of [
        'registry.k8s.io/pause:3.9',
        'k8s.gcr.io/pause:3.9',
        ...[1, 2, 3].map((n) => `gcr.io/k8s-staging-cri-tools/test-image-tags:${n}`),
      ]) {
        const pull = await crictl('pull', ref);
        expect(pull.code, pull.stderr).toBe(0);
      }
      const listed = JSON.parse((await crictl('images', '-o', 'json')).stdout) as { images: { repoTags: string[] }[] };
      const tags = listed.images.map((i) => [...i.repoTags].sort());
      expect(tags).toContainEqual(['k8s.gcr.io/pause:3.9', 'registry.k8s.io/pause:3.9']);
      expect(tags).toContainEqual([1, 2, 3].map((n) => `gcr.io/k8s-staging-cri-tools/test-image-tags:${n}`));
    });

    it('pulls from a registry that wants a token, with --creds', async () => {
      const ref = `${secured.host}/private/app:v1`;
      expect((await crictl('pull', ref)).code).not.toBe(0);
      const pull = await crictl('pull', '--creds', 'alice:s3cret', ref);
      expect(pull.code, pull.stderr).toBe(0);
      expect((await crictl('images', ref)).stdout).toContain(`${secured.host}/private/app`);
    });
  },
);

/** Runs a script with extra environment variables. */
async function runWithEnv(
  file: string,
  args: string[],
  extra: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, extra);
  try {
    return await runProgram('bash', [file, ...args], 120_000);
  } finally {
    for (const key of Object.keys(extra)) {
      if (saved[key] === undefined) Reflect.deleteProperty(process.env, key);
      else process.env[key] = saved[key];
    }
  }
}
