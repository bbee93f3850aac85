import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { sha256 } from '../../src/images/oci.js';

/** Registries on loopback for the image tests: Debian's docker-registry, and a small one in-process. */

export const DOCKER_REGISTRY = '/usr/bin/docker-registry';

/** Why the docker-registry tests cannot run here, or undefined. In CI nothing is skipped. */
export function dockerRegistryMissing(): string | undefined {
  if (existsSync(DOCKER_REGISTRY) || process.env['CI'] === 'true') return undefined;
  return 'docker-registry is not installed (apt-get install docker-registry)';
}

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const archive = pack();
  for (const e of entries) {
    const content = Buffer.from(e.content ?? '');
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(1_000_000_000_000),
      ...(e.linkname === undefined ? {} : { linkname: e.linkname }),
      size: type === 'file' ? content.length : 0,
    };
    if (type === 'file') archive.entry(header, content);
    else archive.entry(header);
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

export interface TestImage {
  /** Blobs by digest: config and layers. */
  blobs: Map<string, Buffer>;
  manifest: Buffer;
  manifestType: string;
  configDigest: string;
  layerDigests: string[];
}

export interface ImageSpec {
  layers: TarEntry[][];
  user?: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  /** Docker v2 schema 2 instead of OCI. */
  docker?: boolean;
  /** Makes the config unique (two images with the same layers). */
  label?: string;
}

export async function buildImage(spec: ImageSpec): Promise<TestImage> {
  const blobs = new Map<string, Buffer>();
  const layers: { digest: string; size: number; diffId: string }[] = [];
  for (const entries of spec.layers) {
    const tar = await tarOf(entries);
    const blob = gzipSync(tar);
    blobs.set(sha256(blob), blob);
    layers.push({ digest: sha256(blob), size: blob.length, diffId: sha256(tar) });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: spec.user ?? '',
        Cmd: spec.cmd ?? ['sh'],
        Entrypoint: spec.entrypoint ?? null,
        Env: spec.env ?? ['PATH=/bin'],
        WorkingDir: '/',
        Labels: spec.label === undefined ? null : { test: spec.label },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  blobs.set(sha256(config), config);
  const docker = spec.docker === true;
  const manifestType = docker
    ? 'application/vnd.docker.distribution.manifest.v2+json'
    : 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestType,
      config: {
        mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
        digest: sha256(config),
        size: config.length,
      },
      layers: layers.map((l) => ({
        mediaType: docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: l.digest,
        size: l.size,
      })),
    }),
  );
  return { blobs, manifest, manifestType, configDigest: sha256(config), layerDigests: layers.map((l) => l.digest) };
}

/** An OCI index with the image for linux/amd64 and a decoy for linux/arm64. */
export function indexOf(image: TestImage, decoy: TestImage): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: decoy.manifestType,
          digest: sha256(decoy.manifest),
          size: decoy.manifest.length,
          platform: { os: 'linux', architecture: 'arm64' },
        },
        {
          mediaType: image.manifestType,
          digest: sha256(image.manifest),
          size: image.manifest.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    }),
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface DockerRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  url: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry (distribution 2.8) on 127.0.0.1, storing under `dir`. */
export async function startDockerRegistry(dir: string): Promise<DockerRegistry> {
  const port = await freePort();
  await mkdir(join(dir, 'storage'), { recursive: true });
  const config = join(dir, 'registry.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'storage')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(DOCKER_REGISTRY, ['serve', config], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/v2/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 100) throw new Error('docker-registry did not start');
    await sleep(50);
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Pushes an image with the distribution API's monolithic upload (POST, then PUT ?digest=). */
export async function pushImage(url: string, repository: string, tag: string, image: TestImage, index?: Buffer): Promise<void> {
  for (const [digest, blob] of image.blobs) {
    const start = await fetch(`${url}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
    const location = new URL(start.headers.get('location') ?? '', url);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: blob, headers: { 'Content-Type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`upload ${digest}: ${put.status} ${await put.text()}`);
  }
  const manifestRef = index === undefined ? tag : sha256(image.manifest);
  const put = await fetch(`${url}/v2/${repository}/manifests/${manifestRef}`, {
    method: 'PUT',
    body: image.manifest,
    headers: { 'Content-Type': image.manifestType },
  });
  if (put.status !== 201) throw new Error(`manifest: ${put.status} ${await put.text()}`);
  if (index !== undefined) {
    const putIndex = await fetch(`${url}/v2/${repository}/manifests/${tag}`, {
      method: 'PUT',
      body: index,
      headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
    });
    if (putIndex.status !== 201) throw new Error(`index: ${putIndex.status} ${await putIndex.text()}`);
  }
}

export interface FakeRegistryOptions {
  /** Require a bearer token from /token, given for these basic credentials. */
  token?: { username: string; password: string };
  /** Serve these bytes instead of the real blob (a tampered registry or proxy). */
  tamper?: Map<string, Buffer>;
  /** Hold every blob response this long before sending it. */
  blobDelayMs?: number;
}

export interface FakeRegistry {
  host: string;
  url: string;
  /** GETs per path, e.g. `/v2/app/blobs/sha256:…` → 1. */
  hits: Map<string, number>;
  add(repository: string, tag: string, image: TestImage, index?: Buffer): void;
  stop(): Promise<void>;
}

/**
 * A read-only registry in this process: the distribution API's GET routes, optional token auth
 * with the `WWW-Authenticate: Bearer realm=…` challenge, and hooks to tamper with or slow blobs.
 */
export async function startFakeRegistry(options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  const manifests = new Map<string, { bytes: Buffer; type: string }>();
  const blobs = new Map<string, Buffer>();
  const hits = new Map<string, number>();
  const TOKEN = 'test-token-1234';
  let url = '';
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', url).pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (path === '/token') {
      const want = options.token;
      const basic = want === undefined ? '' : `Basic ${Buffer.from(`${want.username}:${want.password}`).toString('base64')}`;
      if (req.headers.authorization !== basic) {
        res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: TOKEN }));
      return;
    }
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res
        .writeHead(401, { 'WWW-Authenticate': `Bearer realm="${url}/token",service="fake",scope="repository:x:pull"` })
        .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
    if (path === '/v2/' || path === '/v2') {
      res.writeHead(200).end('{}');
      return;
    }
    if (match === null) {
      res.writeHead(404).end();
      return;
    }
    const [, repository, kind, ref] = match as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const manifest = manifests.get(`${repository}:${ref}`) ?? manifests.get(`${repository}@${ref}`);
      if (manifest === undefined) {
        res.writeHead(404).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
        return;
      }
      res.writeHead(200, { 'Content-Type': manifest.type, 'Docker-Content-Digest': sha256(manifest.bytes) }).end(manifest.bytes);
      return;
    }
    const blob = options.tamper?.get(ref) ?? blobs.get(ref);
    if (blob === undefined) {
      res.writeHead(404).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}');
      return;
    }
    if (options.blobDelayMs !== undefined) await sleep(options.blobDelayMs);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length }).end(blob);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;
  return {
    host: `127.0.0.1:${port}`,
    url,
    hits,
    add(repository, tag, image, index) {
      for (const [digest, blob] of image.blobs) blobs.set(digest, blob);
      manifests.set(`${repository}@${sha256(image.manifest)}`, { bytes: image.manifest, type: image.manifestType });
      if (index === undefined) manifests.set(`${repository}:${tag}`, { bytes: image.manifest, type: image.manifestType });
      else {
        const entry = { bytes: index, type: 'application/vnd.oci.image.index.v1+json' };
        manifests.set(`${repository}:${tag}`, entry);
        manifests.set(`${repository}@${sha256(index)}`, entry);
      }
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
