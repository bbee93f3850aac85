import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError, messageOf } from '../errors.js';
import { KeyedLock } from '../lock.js';
import { log } from '../log.js';
import { run } from '../os/exec.js';
import { unmountIfMounted } from '../os/mount.js';
import { writeAtomic } from '../persist.js';
import { buildBusyboxImage, buildPauseImage, type LocalImage } from './pause-image.js';
import { choosePlatform, imageUser, parseConfig, parseManifest, sha256, type Descriptor, type ImageConfig } from './oci.js';
import { formatReference, isDigest, parseReference, repositoryName } from './reference.js';
import { registryHosts, type RegistryConfig } from './registry-config.js';
import { RegistryClient, type Credentials, type FetchedManifest } from './registry.js';
import { SharedWork } from './shared.js';
import { unpackLayer } from './unpack.js';
import { directoryUsage, type Usage } from './usage.js';

/**
 * The node's images: content-addressed blobs (manifests, configs, compressed layers), each layer
 * unpacked once into a folder shared by every image that has it, and the names (tags and
 * digests) pointing at image ids. An image id is the digest of its config, as in containerd and
 * CRI-O, so the same image pulled from two registries is one image with two names.
 *
 * Layout under `root` (<root_dir>/images):
 *   blobs/sha256/<hex>     manifests, configs, layer blobs, verified against their digest
 *   layers/<hex>/diff      one unpacked layer per diff id, overlayfs whiteouts included
 *   uses/<container id>    the image a container's rootfs is made from (RemoveImage refuses it)
 *   tmp/                   downloads and unpacks in progress, emptied at start
 *   images.json            images and names
 */

/** An image as the CRI and the containers code see it. */
export interface Image {
  /** The config digest, `sha256:<hex>`: Image.id and PullImageResponse.image_ref. */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes of the config and the compressed layers, as containerd reports it. */
  size: bigint;
  /** The configured pause image: never garbage-collected by the kubelet, never removed here. */
  pinned: boolean;
  user: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  stopSignal: string;
  /** `80/tcp`-style keys of the config's ExposedPorts. */
  exposedPorts: string[];
  /** The digest of the platform manifest. */
  manifestDigest: string;
  /** The full config, for ImageStatus verbose info. */
  config: ImageConfig;
}

interface LayerRecord {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
}

interface ImageRecord {
  id: string;
  manifest: string;
  layers: LayerRecord[];
  size: number;
}

/** A name (`repo:tag` or `repo@sha256:…`) → the image and the digest it was resolved through. */
interface NameRecord {
  id: string;
  /** The manifest (or index) digest the registry served for this name; undefined for a locally built image. */
  digest: string | undefined;
}

interface StoreFile {
  images: ImageRecord[];
  names: Record<string, NameRecord>;
}

export interface ImageStoreOptions {
  /** <root_dir>/images */
  root: string;
  /** The pause image name (config `pause_image`). */
  pauseImage: string;
  /** icetray's pause binary, from which the built-in pause image is made. */
  pauseBinary: string;
  registry: RegistryConfig;
  /** How container root filesystems are made: overlayfs (the default where the kernel has it) or a copy. */
  snapshotter?: 'overlay' | 'copy';
}

/** The pause image icetray builds itself; any other configured name is pulled like an image. */
export const BUILTIN_PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';

/** A busybox image icetray makes from the node's busybox-static when it is "pulled" (icetray demo). */
export const BUILTIN_BUSYBOX_IMAGE = 'icetray.local/busybox:latest';
const BUSYBOX_BINARY = '/bin/busybox';

const hex = (digest: string): string => digest.slice('sha256:'.length);
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

export class ImageStore {
  private readonly images = new Map<string, ImageRecord>();
  private readonly names = new Map<string, NameRecord>();
  private readonly configs = new Map<string, ImageConfig>();
  /** container id → image id */
  private readonly uses = new Map<string, string>();
  /** Digests and diff ids a pull in progress relies on: garbage collection leaves them. */
  private readonly leases = new Map<string, number>();
  private readonly lock = new KeyedLock();
  private readonly shared = new SharedWork();
  private overlay = false;

  private constructor(private readonly options: ImageStoreOptions) {}

  get root(): string {
    return this.options.root;
  }

  /** Opens (or creates) the store, drops what a crash left half-made, and makes sure the built-in pause image is there. */
  static async open(options: ImageStoreOptions): Promise<ImageStore> {
    const store = new ImageStore(options);
    await store.load();
    return store;
  }

  private path(...parts: string[]): string {
    return join(this.options.root, ...parts);
  }

  private blobPath(digest: string): string {
    return this.path('blobs', 'sha256', hex(digest));
  }

  private layerPath(diffId: string): string {
    return this.path('layers', hex(diffId), 'diff');
  }

  private async load(): Promise<void> {
    await rm(this.path('tmp'), { recursive: true, force: true });
    for (const dir of ['tmp', 'blobs/sha256', 'layers', 'uses']) await mkdir(this.path(dir), { recursive: true });
    const saved = await readFile(this.path('images.json'), 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    });
    if (saved !== undefined) {
      const file = JSON.parse(saved) as StoreFile;
      for (const image of file.images) {
        try {
          this.configs.set(image.id, parseConfig(await readFile(this.blobPath(image.id)), image.id));
          this.images.set(image.id, image);
        } catch (err) {
          log.warn({ err, image: image.id }, 'dropping an image whose config is unreadable');
        }
      }
      for (const [name, record] of Object.entries(file.names)) if (this.images.has(record.id)) this.names.set(name, record);
    }
    for (const container of await readdir(this.path('uses'))) {
      this.uses.set(container, (await readFile(this.path('uses', container), 'utf8')).trim());
    }
    const kernelHasOverlay = (await readFile('/proc/filesystems', 'utf8').catch(() => ''))
      .split('\n')
      .some((line) => line.endsWith('\toverlay'));
    this.overlay = (this.options.snapshotter ?? 'overlay') === 'overlay' && kernelHasOverlay;
    await this.lock.with('store', () => this.collectGarbage());
    if (this.isBuiltinPause()) {
      // A missing pause binary must not stop the image service: ImageFsInfo and pulls still work.
      await this.buildPause().catch((err: unknown) =>
        log.warn({ error: messageOf(err) }, 'the built-in pause image is not in the store'),
      );
    }
  }

  private isBuiltinPause(): boolean {
    return formatReference(parseReference(this.options.pauseImage)) === formatReference(parseReference(BUILTIN_PAUSE_IMAGE));
  }

  private async save(): Promise<void> {
    const file: StoreFile = { images: [...this.images.values()], names: Object.fromEntries(this.names) };
    await writeAtomic(this.path('images.json'), `${JSON.stringify(file, null, 2)}\n`);
  }

  // ---- lookups ------------------------------------------------------------------------------

  private idsByPrefix(prefix: string): string[] {
    return [...this.images.keys()].filter((id) => hex(id).startsWith(prefix));
  }

  /** The image id a reference names: an id, a unique id prefix, a tag or a repo digest; untagged means `:latest`. */
  private resolveId(ref: string): string | undefined {
    const id = ref.startsWith('sha256:') ? ref : /^[a-f0-9]{64}$/.test(ref) ? `sha256:${ref}` : undefined;
    if (id !== undefined && isDigest(id)) return this.images.has(id) ? id : undefined;
    let parsed;
    try {
      parsed = parseReference(ref);
    } catch {
      parsed = undefined;
    }
    if (parsed !== undefined) {
      const byName = this.names.get(formatReference(parsed));
      if (byName !== undefined) return byName.id;
      if (parsed.digest !== undefined) {
        // A repo digest: any name of that repository resolved through that digest.
        const repo = repositoryName(parsed);
        for (const [name, record] of this.names) {
          if (record.digest === parsed.digest && repositoryName(parseReference(name)) === repo) return record.id;
        }
      }
    }
    // crictl prints ids cut to 13 characters and passes them back as they are.
    const prefix = ref.startsWith('sha256:') ? hex(ref) : ref;
    if (/^[a-f0-9]+$/.test(prefix)) {
      const matches = this.idsByPrefix(prefix);
      if (matches.length === 1) return matches[0];
    }
    return undefined;
  }

  private pinnedName(): string {
    return formatReference(parseReference(this.options.pauseImage));
  }

  private view(id: string): Image | undefined {
    const record = this.images.get(id);
    const config = this.configs.get(id);
    if (record === undefined || config === undefined) return undefined;
    const repoTags: string[] = [];
    const repoDigests = new Set<string>();
    let pinned = false;
    const pin = this.pinnedName();
    for (const [name, ref] of this.names) {
      if (ref.id !== id) continue;
      if (name === pin) pinned = true;
      const parsed = parseReference(name);
      if (parsed.tag !== undefined) repoTags.push(name);
      if (ref.digest !== undefined) repoDigests.add(`${repositoryName(parsed)}@${ref.digest}`);
    }
    const c = config.config ?? {};
    return {
      id,
      repoTags: repoTags.sort(),
      repoDigests: [...repoDigests].sort(),
      size: BigInt(record.size),
      pinned,
      user: c.User ?? '',
      entrypoint: c.Entrypoint ?? [],
      cmd: c.Cmd ?? [],
      env: c.Env ?? [],
      workingDir: c.WorkingDir ?? '',
      stopSignal: c.StopSignal ?? '',
      exposedPorts: Object.keys(c.ExposedPorts ?? {}),
      manifestDigest: record.manifest,
      config,
    };
  }

  /** The image a reference names (tag, repo digest, id or unique id prefix), or undefined. */
  resolve(ref: string): Image | undefined {
    const id = this.resolveId(ref);
    return id === undefined ? undefined : this.view(id);
  }

  /** Every image, or those the filter names (ListImages' `filter.image.image`). */
  list(filter?: string): Image[] {
    if (filter !== undefined && filter !== '') {
      const image = this.resolve(filter);
      return image === undefined ? [] : [image];
    }
    return [...this.images.keys()].flatMap((id) => this.view(id) ?? []);
  }

  /** uid and username the image's USER names (CRI Image.uid / Image.username). */
  static userOf(image: Image): { uid: bigint | undefined; username: string } {
    return imageUser(image.user);
  }

  /** What the store takes on disk, for ImageFsInfo. */
  usage(): Promise<Usage> {
    return directoryUsage(this.options.root);
  }

  // ---- pulling ------------------------------------------------------------------------------

  private lease(keys: string[]): () => void {
    for (const key of keys) this.leases.set(key, (this.leases.get(key) ?? 0) + 1);
    return () => {
      for (const key of keys) {
        const left = (this.leases.get(key) ?? 1) - 1;
        if (left === 0) this.leases.delete(key);
        else this.leases.set(key, left);
      }
    };
  }

  private async hasBlob(digest: string): Promise<boolean> {
    return stat(this.blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  private async putBlob(digest: string, bytes: Buffer): Promise<void> {
    if (sha256(bytes) !== digest) throw new UnavailableError(`content does not match its digest ${digest}`);
    if (await this.hasBlob(digest)) return;
    const temp = this.path('tmp', randomBytes(8).toString('hex'));
    await writeFile(temp, bytes);
    await rename(temp, this.blobPath(digest));
  }

  /** Downloads a blob into the content store, checking its size and digest before it is kept. */
  private async fetchBlob(client: RegistryClient, layer: Descriptor, signal: AbortSignal): Promise<void> {
    if (await this.hasBlob(layer.digest)) return;
    const temp = this.path('tmp', randomBytes(8).toString('hex'));
    try {
      const res = await client.blob(layer.digest, signal);
      const hash = createHash('sha256');
      let size = 0;
      const verify = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          size += chunk.length;
          if (size > layer.size) {
            done(new UnavailableError(`blob ${layer.digest} is larger than the ${layer.size} bytes its manifest says`));
            return;
          }
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(res, verify, createWriteStream(temp), { signal });
      const actual = `sha256:${hash.digest('hex')}`;
      if (size !== layer.size || actual !== layer.digest)
        throw new UnavailableError(`blob ${layer.digest} failed verification: got ${size} bytes with digest ${actual}`);
      await rename(temp, this.blobPath(layer.digest));
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Unpacks a stored blob into its shared layer folder, checking the diff id the config promises. */
  private async unpack(layer: LayerRecord, signal: AbortSignal): Promise<void> {
    const final = this.path('layers', hex(layer.diffId));
    if (
      await stat(final).then(
        () => true,
        () => false,
      )
    )
      return;
    const temp = this.path('tmp', randomBytes(8).toString('hex'));
    try {
      const diffId = await unpackLayer(createReadStream(this.blobPath(layer.digest), { signal }), join(temp, 'diff'), 'overlay');
      if (diffId !== layer.diffId)
        throw new UnavailableError(`layer ${layer.digest} unpacks to ${diffId}, but the image config says ${layer.diffId}`);
      if (signal.aborted) throw abortReason(signal);
      await rename(temp, final).catch((err: unknown) => {
        // Another pull finished the same layer first: keep its copy.
        if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }

  private ensureLayer(client: RegistryClient | undefined, layer: LayerRecord, signal: AbortSignal): Promise<void> {
    return this.shared.run(`layer ${layer.diffId}`, signal, async (shared) => {
      if (client !== undefined) await this.fetchBlob(client, layer, shared);
      await this.unpack(layer, shared);
    });
  }

  /**
   * PullImage: fetches the image from the registry's mirrors or the registry, verifies every
   * blob and unpacks its layers, then names it. Nothing is named before everything is stored,
   * so an aborted or failed pull leaves no image; what it downloaded is collected.
   */
  async pull(ref: string, credentials: Credentials | undefined, signal: AbortSignal): Promise<Image> {
    const parsed = parseReference(ref);
    const name = formatReference(parsed);
    // icetray.local/ names no registry: the image is made here.
    if (name === BUILTIN_BUSYBOX_IMAGE) return this.buildBusybox();
    const releases: (() => void)[] = [];
    let committed = false;
    try {
      const client = new RegistryClient(
        await registryHosts(this.options.registry, parsed.registry),
        parsed.registry,
        parsed.repository,
        credentials,
      );
      const top = await client.manifest(parsed.digest ?? parsed.tag ?? 'latest', signal);
      let manifest: FetchedManifest = top;
      let content = parseManifest(top.bytes, top.mediaType, name);
      if (content.kind === 'index') {
        const entry = choosePlatform(content.manifests, name);
        manifest = await client.manifest(entry.digest, signal);
        content = parseManifest(manifest.bytes, manifest.mediaType, name);
        if (content.kind === 'index') throw new InvalidArgumentError(`index of ${name} points to another index`);
      }
      const configDescriptor = content.config;
      releases.push(this.lease([top.digest, manifest.digest, configDescriptor.digest, ...content.layers.map((l) => l.digest)]));
      const configBytes = await this.configBytes(client, configDescriptor, signal);
      const config = parseConfig(configBytes, name);
      if (config.rootfs.diff_ids.length !== content.layers.length)
        throw new InvalidArgumentError(
          `image ${name} has ${content.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff ids`,
        );
      const layers = content.layers.map((l, i) => ({
        digest: l.digest,
        size: l.size,
        mediaType: l.mediaType,
        diffId: config.rootfs.diff_ids[i] ?? '',
      }));
      releases.push(this.lease(layers.map((l) => l.diffId)));
      await Promise.all(layers.map((layer) => this.ensureLayer(client, layer, signal)));
      if (signal.aborted) throw abortReason(signal);
      await this.putBlob(top.digest, top.bytes);
      await this.putBlob(manifest.digest, manifest.bytes);
      await this.putBlob(configDescriptor.digest, configBytes);
      const record: ImageRecord = {
        id: configDescriptor.digest,
        manifest: manifest.digest,
        layers,
        size: configDescriptor.size + layers.reduce((sum, l) => sum + l.size, 0),
      };
      const image = await this.commit(record, config, name, top.digest, signal);
      committed = true;
      return image;
    } catch (err) {
      if (signal.aborted) throw abortReason(signal);
      throw err;
    } finally {
      for (const release of releases) release();
      if (!committed)
        void this.lock
          .with('store', () => this.collectGarbage())
          .catch((err: unknown) => log.warn({ err }, 'image garbage collection failed'));
    }
  }

  private async configBytes(client: RegistryClient, descriptor: Descriptor, signal: AbortSignal): Promise<Buffer> {
    if (descriptor.size > MAX_CONFIG_BYTES)
      throw new InvalidArgumentError(`image config ${descriptor.digest} is ${descriptor.size} bytes: too large`);
    if (await this.hasBlob(descriptor.digest)) return readFile(this.blobPath(descriptor.digest));
    const res = await client.blob(descriptor.digest, signal);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    if (sha256(bytes) !== descriptor.digest) throw new UnavailableError(`image config ${descriptor.digest} failed verification`);
    return bytes;
  }

  /** Names the image, last step of a pull: the names move atomically, a name's previous image goes if nothing else names it. */
  private commit(
    record: ImageRecord,
    config: ImageConfig,
    name: string,
    digest: string | undefined,
    signal?: AbortSignal,
  ): Promise<Image> {
    return this.lock.with('store', async () => {
      if (signal?.aborted === true) throw abortReason(signal);
      if (!this.images.has(record.id)) this.images.set(record.id, record);
      this.configs.set(record.id, config);
      const previous = this.names.get(name);
      this.names.set(name, { id: record.id, digest });
      if (previous !== undefined && previous.id !== record.id && !this.isNamed(previous.id) && !this.isUsed(previous.id)) {
        this.images.delete(previous.id);
        this.configs.delete(previous.id);
      }
      await this.save();
      await this.collectGarbage();
      const image = this.view(record.id);
      if (image === undefined) throw new NotFoundError(`image "${record.id}" vanished while being stored`);
      return image;
    });
  }

  private isNamed(id: string): boolean {
    for (const record of this.names.values()) if (record.id === id) return true;
    return false;
  }

  private isUsed(id: string): boolean {
    for (const used of this.uses.values()) if (used === id) return true;
    return false;
  }

  // ---- the pause image ----------------------------------------------------------------------

  private async storeLocal(name: string, local: LocalImage): Promise<Image> {
    const manifestDigest = sha256(local.manifest);
    const configDigest = sha256(local.config);
    const config = parseConfig(local.config, name);
    const layers = local.layers.map((l) => ({
      digest: sha256(l.blob),
      size: l.blob.length,
      mediaType: l.mediaType,
      diffId: l.diffId,
    }));
    const release = this.lease([manifestDigest, configDigest, ...layers.flatMap((l) => [l.digest, l.diffId])]);
    try {
      for (const [i, layer] of layers.entries()) {
        await this.putBlob(layer.digest, local.layers[i]?.blob ?? Buffer.alloc(0));
        await this.ensureLayer(undefined, layer, new AbortController().signal);
      }
      await this.putBlob(manifestDigest, local.manifest);
      await this.putBlob(configDigest, local.config);
      const size = local.config.length + layers.reduce((sum, l) => sum + l.size, 0);
      return await this.commit({ id: configDigest, manifest: manifestDigest, layers, size }, config, name, undefined);
    } finally {
      release();
    }
  }

  private async buildBusybox(): Promise<Image> {
    let applets: string[];
    try {
      applets = (await run(BUSYBOX_BINARY, ['--list'])).stdout.split('\n').filter(Boolean);
    } catch (err) {
      throw new UnavailableError(
        `cannot make ${BUILTIN_BUSYBOX_IMAGE}: ${BUSYBOX_BINARY} is missing (apt-get install busybox-static)`,
        { cause: err },
      );
    }
    return this.storeLocal(BUILTIN_BUSYBOX_IMAGE, await buildBusyboxImage(BUSYBOX_BINARY, applets));
  }

  private async buildPause(): Promise<Image> {
    const name = this.pinnedName();
    const local = await buildPauseImage(this.options.pauseBinary).catch((err: unknown) => {
      throw new UnavailableError(
        `cannot build the pause image from ${this.options.pauseBinary} (run "npm run build:native"): ${messageOf(err)}`,
        { cause: err },
      );
    });
    const existing = this.names.get(name);
    if (existing !== undefined && existing.id === sha256(local.config)) return this.view(existing.id) as Image;
    return this.storeLocal(name, local);
  }

  /**
   * The configured pause image, present in the store: the built-in one is made from the pause
   * binary, a custom one (a private registry's) is pulled like any image (RunPodSandbox calls this).
   */
  async ensurePauseImage(signal: AbortSignal = new AbortController().signal): Promise<Image> {
    const present = this.resolve(this.options.pauseImage);
    if (present !== undefined) return present;
    if (this.isBuiltinPause()) return this.buildPause();
    return this.pull(this.options.pauseImage, undefined, signal);
  }

  // ---- removing -----------------------------------------------------------------------------

  /**
   * RemoveImage: the image and every name it has (critest's "removing image by one tag should
   * remove all tags"). Unknown images are not an error (RemoveImage is idempotent, api.proto);
   * the pinned pause image and images under a container's rootfs are refused.
   */
  remove(ref: string): Promise<void> {
    return this.lock.with('store', async () => {
      const id = this.resolveId(ref);
      if (id === undefined) return;
      const image = this.view(id);
      if (image?.pinned === true)
        throw new FailedPreconditionError(
          `image "${ref}" is the pinned pause image (${this.options.pauseImage}): refusing to remove it`,
        );
      for (const [container, used] of this.uses) {
        if (used === id) throw new FailedPreconditionError(`image "${ref}" is in use by container "${container}"`);
      }
      for (const [name, record] of this.names) if (record.id === id) this.names.delete(name);
      this.images.delete(id);
      this.configs.delete(id);
      await this.save();
      await this.collectGarbage();
    });
  }

  /** Deletes blobs and layer folders no image names and no pull in progress relies on. Call under the store lock. */
  private async collectGarbage(): Promise<void> {
    const keep = new Set<string>(this.leases.keys());
    for (const image of this.images.values()) {
      keep.add(image.id).add(image.manifest);
      for (const layer of image.layers) keep.add(layer.digest).add(layer.diffId);
    }
    for (const record of this.names.values()) if (record.digest !== undefined) keep.add(record.digest);
    for (const file of await readdir(this.path('blobs', 'sha256'))) {
      if (!keep.has(`sha256:${file}`)) await rm(this.path('blobs', 'sha256', file), { force: true });
    }
    for (const dir of await readdir(this.path('layers'))) {
      if (dir !== 'empty' && !keep.has(`sha256:${dir}`)) await rm(this.path('layers', dir), { recursive: true, force: true });
    }
  }

  // ---- container root filesystems -----------------------------------------------------------

  /**
   * A writable root filesystem for a container: overlayfs with the image's layers as lowerdirs
   * and upper/work under the container's folder, or a copy of the layers where overlayfs is
   * unavailable. The image is marked in use until `releaseRootfs`, so RemoveImage refuses it.
   */
  createRootfs(imageId: string, containerId: string, containerDir: string): Promise<string> {
    return this.lock.with('store', async () => {
      const image = this.images.get(imageId);
      if (image === undefined) throw new NotFoundError(`image "${imageId}" not found`);
      await writeFile(this.path('uses', containerId), imageId);
      this.uses.set(containerId, imageId);
      const rootfs = join(containerDir, 'rootfs');
      try {
        await mkdir(rootfs, { recursive: true });
        if (this.overlay) await this.mountOverlay(image, containerDir, rootfs);
        else await this.copyLayers(image, rootfs);
      } catch (err) {
        this.uses.delete(containerId);
        await rm(this.path('uses', containerId), { force: true });
        throw err;
      }
      return rootfs;
    });
  }

  private async mountOverlay(image: ImageRecord, containerDir: string, rootfs: string): Promise<void> {
    const upper = join(containerDir, 'upper');
    const work = join(containerDir, 'work');
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    // overlayfs lists the top layer first; an image without layers gets one empty folder.
    const lowers = image.layers.map((l) => this.layerPath(l.diffId)).reverse();
    if (lowers.length === 0) {
      await mkdir(this.path('layers', 'empty'), { recursive: true });
      lowers.push(this.path('layers', 'empty'));
    }
    const options = `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;
    await run('mount', ['-t', 'overlay', 'overlay', '-o', options, rootfs]).catch((err: unknown) => {
      throw new UnavailableError(`failed to mount the overlay rootfs at ${rootfs}: ${messageOf(err)}`, { cause: err });
    });
  }

  private async copyLayers(image: ImageRecord, rootfs: string): Promise<void> {
    for (const layer of image.layers) {
      await unpackLayer(createReadStream(this.blobPath(layer.digest)), rootfs, 'apply');
    }
  }

  /** Unmounts and deletes a container's rootfs and lets its image be removed again; a rootfs already gone is fine. */
  releaseRootfs(_imageId: string, containerId: string, containerDir: string): Promise<void> {
    return this.lock.with('store', async () => {
      const rootfs = join(containerDir, 'rootfs');
      await unmountIfMounted(rootfs);
      for (const dir of ['rootfs', 'upper', 'work']) await rm(join(containerDir, dir), { recursive: true, force: true });
      this.uses.delete(containerId);
      await rm(this.path('uses', containerId), { force: true });
    });
  }
}
