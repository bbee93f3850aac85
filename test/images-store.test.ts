import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeadlineExceededError, FailedPreconditionError, UnavailableError } from '../src/errors.js';
import { setLogLevel } from '../src/log.js';
import { sha256 } from '../src/images/oci.js';
import type { RegistryConfig } from '../src/images/registry-config.js';
import { ImageStore } from '../src/images/store.js';
import { PAUSE_BINARY } from '../src/paths.js';
import { isRoot } from './helpers/tools.js';
import {
  buildImage,
  dockerRegistryMissing,
  indexOf,
  pushImage,
  startDockerRegistry,
  startFakeRegistry,
  type DockerRegistry,
  type FakeRegistry,
  type TestImage,
} from './helpers/registry.js';

const noMirrors: RegistryConfig = { mirrors: {}, configPath: undefined };
const never = (): AbortSignal => new AbortController().signal;

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).sort();
}

// Unpacking sets owners and makes whiteout device nodes: that takes root.
describe.skipIf(!isRoot)(
  `the image store pulls, names and removes images (${isRoot ? 'root' : 'needs root: chown, mknod'})`,
  () => {
    let dir: string;
    let fake: FakeRegistry;
    let busybox: TestImage;
    let other: TestImage;
    const open = (
      root: string,
      registry: RegistryConfig = noMirrors,
      extra: Partial<Parameters<typeof ImageStore.open>[0]> = {},
    ) => ImageStore.open({ root, pauseImage: 'registry.k8s.io/pause:3.10', pauseBinary: PAUSE_BINARY, registry, ...extra });

    beforeAll(async () => {
      setLogLevel('silent');
      dir = await mkdtemp(join(tmpdir(), 'icetray-images-'));
      busybox = await buildImage({
        layers: [
          [
            { name: 'bin/', type: 'directory' },
            { name: 'bin/sh', content: '#!fake shell\n', mode: 0o755 },
            { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
          ],
        ],
        user: '1002',
        cmd: ['sh'],
      });
      other = await buildImage({ layers: [[{ name: 'other', content: 'x' }]], user: 'www-data:1004', docker: true });
      fake = await startFakeRegistry();
      fake.add('e2e-test-images/busybox', '1.29-2', busybox);
      fake.add('tools/other', 'v1', other);
    });
    afterAll(async () => {
      await fake.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('pulls by tag, names the image by its config digest and resolves it by tag, id, prefix and repo digest', async () => {
      const store = await open(join(dir, 'a'));
      const ref = `${fake.host}/e2e-test-images/busybox:1.29-2`;
      const image = await store.pull(ref, undefined, never());
      expect(image.id).toBe(busybox.configDigest);
      expect(image.repoTags).toEqual([ref]);
      expect(image.repoDigests).toEqual([`${fake.host}/e2e-test-images/busybox@${sha256(busybox.manifest)}`]);
      expect(image.user).toBe('1002');
      expect(ImageStore.userOf(image)).toEqual({ uid: 1002n, username: '' });
      expect(image.size).toBeGreaterThan(0n);
      for (const name of [ref, image.id, image.id.slice(7), image.id.slice(7, 20), image.repoDigests[0] ?? '']) {
        expect(store.resolve(name)?.id, name).toBe(image.id);
      }
      expect(store.resolve(`${fake.host}/e2e-test-images/busybox`)).toBeUndefined(); // :latest was never pulled
      expect(store.list().map((i) => i.id)).toContain(image.id);
      // Blobs and the unpacked layer are there, verified.
      const diffId = image.config.rootfs.diff_ids[0] ?? '';
      expect(existsSync(join(dir, 'a', 'layers', diffId.slice(7), 'diff', 'bin', 'sh'))).toBe(true);
    });

    it('keeps images and names across a restart', async () => {
      const store = await open(join(dir, 'a'));
      expect(store.resolve(`${fake.host}/e2e-test-images/busybox:1.29-2`)?.id).toBe(busybox.configDigest);
    });

    it('gives one image every name it is pulled under, and removing it by one removes all', async () => {
      const store = await open(join(dir, 'b'));
      fake.add('e2e-test-images/busybox', 'also', busybox);
      await store.pull(`${fake.host}/e2e-test-images/busybox:1.29-2`, undefined, never());
      const again = await store.pull(`${fake.host}/e2e-test-images/busybox:also`, undefined, never());
      expect(again.repoTags).toEqual([
        `${fake.host}/e2e-test-images/busybox:1.29-2`,
        `${fake.host}/e2e-test-images/busybox:also`,
      ]);
      await store.remove(`${fake.host}/e2e-test-images/busybox:also`);
      expect(store.resolve(`${fake.host}/e2e-test-images/busybox:1.29-2`)).toBeUndefined();
      expect(store.resolve(busybox.configDigest)).toBeUndefined();
      // Removing what is not there is success (RemoveImage is idempotent), concurrently too.
      await Promise.all(Array.from({ length: 5 }, () => store.remove(busybox.configDigest)));
      await store.remove('0'.repeat(64));
      // Only the pause image's content is left.
      const pause = store.resolve('registry.k8s.io/pause:3.10');
      expect(pause).toBeDefined();
      expect(await files(join(dir, 'b', 'layers'))).toEqual(pause ? [pause.config.rootfs.diff_ids[0]?.slice(7) ?? ''] : []);
    });

    it('pulls by digest: no repo tag, the digest reference as repo digest', async () => {
      const store = await open(join(dir, 'c'));
      const ref = `${fake.host}/tools/other@${sha256(other.manifest)}`;
      const image = await store.pull(ref, undefined, never());
      expect(image.repoTags).toEqual([]);
      expect(image.repoDigests).toEqual([ref]);
      expect(store.resolve(ref)?.id).toBe(other.configDigest);
      expect(ImageStore.userOf(image)).toEqual({ uid: undefined, username: 'www-data' });
    });

    it('picks the linux/amd64 manifest of an index and reports the index digest', async () => {
      const decoy = await buildImage({ layers: [[{ name: 'arm', content: 'arm' }]] });
      const index = indexOf(busybox, decoy);
      fake.add('multi/arch', '1', busybox, index);
      fake.add('multi/arch', 'decoy', decoy);
      const store = await open(join(dir, 'd'));
      const image = await store.pull(`${fake.host}/multi/arch:1`, undefined, never());
      expect(image.id).toBe(busybox.configDigest);
      expect(image.repoDigests).toEqual([`${fake.host}/multi/arch@${sha256(index)}`]);
    });

    it('rejects a tampered blob and keeps nothing of the pull', async () => {
      const image = await buildImage({ layers: [[{ name: 'secret', content: 'the real bytes' }]] });
      const layer = image.layerDigests[0] ?? '';
      const evil = await startFakeRegistry({ tamper: new Map([[layer, Buffer.from('not the layer at all')]]) });
      try {
        evil.add('app', 'v1', image);
        const root = join(dir, 'e');
        const store = await open(root);
        const before = await files(join(root, 'blobs', 'sha256'));
        await expect(store.pull(`${evil.host}/app:v1`, undefined, never())).rejects.toThrow(/larger than|failed verification/);
        expect(store.resolve(`${evil.host}/app:v1`)).toBeUndefined();
        await new Promise((resolve) => setTimeout(resolve, 100)); // garbage collection runs after the failure
        expect(await files(join(root, 'blobs', 'sha256'))).toEqual(before);
        expect(await files(join(root, 'tmp'))).toEqual([]);
      } finally {
        await evil.stop();
      }
    });

    it('answers the token challenge with the pull credentials, and fails without them', async () => {
      const secured = await startFakeRegistry({ token: { username: 'alice', password: 's3cret' } });
      try {
        secured.add('private/app', 'v1', other);
        const store = await open(join(dir, 'f'));
        const ref = `${secured.host}/private/app:v1`;
        await expect(store.pull(ref, undefined, never())).rejects.toThrow(/token request .* failed/);
        const creds = {
          username: 'alice',
          password: 's3cret',
          auth: '',
          serverAddress: '',
          identityToken: '',
          registryToken: '',
        };
        const image = await store.pull(ref, creds, never());
        expect(image.id).toBe(other.configDigest);
        expect(secured.hits.get('/token')).toBeGreaterThanOrEqual(2);
      } finally {
        await secured.stop();
      }
    });

    it('tries mirrors in order and falls back to the next one, keeping the upstream name', async () => {
      const mirror = await startFakeRegistry();
      try {
        mirror.add('e2e-test-images/busybox', '1.29-2', busybox);
        // The first endpoint refuses connections; the second has the image; registry.k8s.io is never asked.
        const registry: RegistryConfig = {
          mirrors: { 'registry.k8s.io': ['http://127.0.0.1:1', mirror.url] },
          configPath: undefined,
        };
        const store = await open(join(dir, 'g'), registry);
        const image = await store.pull('registry.k8s.io/e2e-test-images/busybox:1.29-2', undefined, never());
        expect(image.repoTags).toEqual(['registry.k8s.io/e2e-test-images/busybox:1.29-2']);
        expect(mirror.hits.get('/v2/e2e-test-images/busybox/manifests/1.29-2')).toBe(1);
      } finally {
        await mirror.stop();
      }
    });

    it('falls back to the registry itself when every mirror misses', async () => {
      const empty = await startFakeRegistry();
      try {
        const registry: RegistryConfig = { mirrors: { [fake.host]: [empty.url] }, configPath: undefined };
        const store = await open(join(dir, 'h'), registry);
        const image = await store.pull(`${fake.host}/tools/other:v1`, undefined, never());
        expect(image.id).toBe(other.configDigest);
        expect(empty.hits.get('/v2/tools/other/manifests/v1')).toBe(1);
      } finally {
        await empty.stop();
      }
    });

    it('downloads each blob once when the same image is pulled concurrently', async () => {
      const slow = await startFakeRegistry({ blobDelayMs: 200 });
      try {
        const image = await buildImage({ layers: [[{ name: 'a', content: 'a' }], [{ name: 'b', content: 'b' }]] });
        slow.add('shared/app', 'v1', image);
        const store = await open(join(dir, 'i'));
        const pulls = await Promise.all(
          Array.from({ length: 4 }, () => store.pull(`${slow.host}/shared/app:v1`, undefined, never())),
        );
        expect(new Set(pulls.map((p) => p.id))).toEqual(new Set([image.configDigest]));
        for (const digest of image.layerDigests) expect(slow.hits.get(`/v2/shared/app/blobs/${digest}`)).toBe(1);
      } finally {
        await slow.stop();
      }
    });

    it('stops an aborted pull with the abort reason and keeps no partial image', async () => {
      const slow = await startFakeRegistry({ blobDelayMs: 2000 });
      try {
        const image = await buildImage({ layers: [[{ name: 'slow', content: 'slow' }]] });
        slow.add('slow/app', 'v1', image);
        const root = join(dir, 'j');
        const store = await open(root);
        const signal = AbortSignal.timeout(300);
        const controller = new AbortController();
        signal.addEventListener('abort', () => controller.abort(new DeadlineExceededError('deadline')));
        await expect(store.pull(`${slow.host}/slow/app:v1`, undefined, controller.signal)).rejects.toBeInstanceOf(
          DeadlineExceededError,
        );
        expect(store.resolve(`${slow.host}/slow/app:v1`)).toBeUndefined();
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(await files(join(root, 'tmp'))).toEqual([]);
      } finally {
        await slow.stop();
      }
    });

    it('reports an unknown image as not found and an unreachable registry as unavailable', async () => {
      const store = await open(join(dir, 'k'));
      await expect(store.pull(`${fake.host}/nope/nothing:v1`, undefined, never())).rejects.toThrow(/not found/);
      await expect(store.pull('127.0.0.1:1/x:y', undefined, never())).rejects.toBeInstanceOf(UnavailableError);
    });

    it('has the pause image built in, pinned and not removable', async () => {
      const store = await open(join(dir, 'l'));
      const pause = store.resolve('registry.k8s.io/pause:3.10');
      expect(pause?.pinned).toBe(true);
      expect(pause?.entrypoint).toEqual(['/pause']);
      await expect(store.remove('registry.k8s.io/pause:3.10')).rejects.toBeInstanceOf(FailedPreconditionError);
      // Rebuilding from the same binary gives the same id.
      const reopened = await open(join(dir, 'l'));
      expect(reopened.resolve('registry.k8s.io/pause:3.10')?.id).toBe(pause?.id);
      expect((await reopened.ensurePauseImage()).id).toBe(pause?.id);
    });

    describe.each(['overlay', 'copy'] as const)('container root filesystems (%s)', (snapshotter) => {
      const roots: string[] = [];
      afterEach(async () => {
        for (const root of roots.splice(0)) await rm(root, { recursive: true, force: true });
      });

      it('stacks the layers with their whiteouts and opaque folders, and refuses to remove an image in use', async () => {
        const layered = await buildImage({
          layers: [
            [
              { name: 'a/file1', content: '1' },
              { name: 'a/file2', content: '2' },
              { name: 'b/x', content: 'x' },
              { name: 'c/keep', content: 'k' },
              { name: 'bin/tool', content: 'tool', mode: 0o4755, uid: 0 },
              { name: 'home/user/owned', content: 'o', uid: 1000, gid: 1000 },
              { name: 'hard', type: 'link', linkname: 'c/keep' },
            ],
            [
              { name: 'a/.wh.file1' },
              { name: 'b/', type: 'directory' },
              { name: 'b/.wh..wh..opq' },
              { name: 'b/y', content: 'y' },
              { name: 'link', type: 'symlink', linkname: 'c/keep' },
            ],
          ],
        });
        fake.add('layered/app', snapshotter, layered);
        const root = join(dir, `m-${snapshotter}`);
        const store = await open(root, noMirrors, { snapshotter });
        const image = await store.pull(`${fake.host}/layered/app:${snapshotter}`, undefined, never());
        const containerDir = await mkdtemp(join(tmpdir(), 'icetray-ctr-'));
        roots.push(containerDir);
        const rootfs = await store.createRootfs(image.id, 'ctr1', containerDir);
        try {
          expect(await files(join(rootfs, 'a'))).toEqual(['file2']);
          expect(await files(join(rootfs, 'b'))).toEqual(['y']);
          expect(await readFile(join(rootfs, 'link'), 'utf8')).toBe('k');
          expect(await readFile(join(rootfs, 'hard'), 'utf8')).toBe('k');
          const tool = await lstat(join(rootfs, 'bin', 'tool'));
          expect(tool.mode & 0o7777).toBe(0o4755);
          expect((await lstat(join(rootfs, 'home', 'user', 'owned'))).uid).toBe(1000);
          await expect(store.remove(image.id)).rejects.toBeInstanceOf(FailedPreconditionError);
        } finally {
          await store.releaseRootfs(image.id, 'ctr1', containerDir);
        }
        expect(existsSync(rootfs)).toBe(false);
        await store.remove(image.id);
        expect(store.resolve(image.id)).toBeUndefined();
      });
    });
  },
);

const registrySkip = !isRoot ? 'needs root' : dockerRegistryMissing();

describe.skipIf(registrySkip !== undefined)(
  `pulling from Debian's docker-registry (${registrySkip ?? 'distribution 2.8'})`,
  () => {
    let dir: string;
    let registry: DockerRegistry;

    beforeAll(async () => {
      setLogLevel('silent');
      dir = await mkdtemp(join(tmpdir(), 'icetray-distribution-'));
      registry = await startDockerRegistry(join(dir, 'registry'));
    });
    afterAll(async () => {
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it.each([
      ['OCI', false],
      ['Docker v2 schema 2', true],
    ])('pulls a %s image that distribution stored and served', async (_kind, docker) => {
      const image = await buildImage({ layers: [[{ name: 'hello', content: 'world' }]], docker, label: String(docker) });
      await pushImage(registry.url, 'k8s-staging-cri-tools/test-image-tag', docker ? 'docker' : 'oci', image);
      const store = await ImageStore.open({
        root: join(dir, `store-${docker}`),
        pauseImage: 'registry.k8s.io/pause:3.10',
        pauseBinary: PAUSE_BINARY,
        registry: { mirrors: { 'gcr.io': [registry.url] }, configPath: undefined },
      });
      const ref = `gcr.io/k8s-staging-cri-tools/test-image-tag:${docker ? 'docker' : 'oci'}`;
      const pulled = await store.pull(ref, undefined, never());
      expect(pulled.id).toBe(image.configDigest);
      expect(pulled.repoTags).toEqual([ref]);
      expect(pulled.repoDigests).toEqual([`gcr.io/k8s-staging-cri-tools/test-image-tag@${sha256(image.manifest)}`]);
    });
  },
);
