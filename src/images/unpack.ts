import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { extract, type Extract } from 'tar-stream';
import { InvalidArgumentError } from '../errors.js';
import { run } from '../os/exec.js';

/**
 * Unpacking OCI layers (image-spec layer.md): a tar, plain, gzip or zstd, whose `.wh.<name>`
 * entries delete a lower file and `.wh..wh..opq` hides a lower folder's content.
 *
 * Two modes: `overlay` writes one layer into its own folder with whiteouts in overlayfs' form
 * (a 0/0 character device, the `trusted.overlay.opaque` xattr), so the folder can be a lowerdir
 * shared by every image that has the layer; `apply` writes a layer onto a root filesystem,
 * deleting what the whiteouts name (the copy fallback where overlayfs is unavailable).
 *
 * Entries are confined to the target: `..`, absolute link targets of hard links and paths
 * through a symlink are refused, so a hostile layer cannot write outside its folder.
 */
export type UnpackMode = 'overlay' | 'apply';

/** One entry of the archive, as tar-stream's async iterator yields it. */
type TarEntry = Extract extends AsyncIterable<infer T> ? T : never;

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** The layer's bytes decompressed, whatever the compression: chosen by magic number, not by media type. */
function decompressor(first: Buffer): Transform {
  if (first[0] === 0x1f && first[1] === 0x8b) return createGunzip();
  if (first[0] === 0x28 && first[1] === 0xb5 && first[2] === 0x2f && first[3] === 0xfd) {
    const zstd = new Decompress();
    const transform = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        try {
          zstd.push(chunk);
          done();
        } catch (err) {
          done(err as Error);
        }
      },
      flush(done) {
        try {
          zstd.push(new Uint8Array(0), true);
          done();
        } catch (err) {
          done(err as Error);
        }
      },
    });
    zstd.ondata = (data) => transform.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return transform;
  }
  return new PassThrough();
}

/** Picks the decompressor from the first bytes, then streams everything through it. */
function decompress(): Transform {
  let inner: Transform | undefined;
  const outer = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (inner === undefined) {
        inner = decompressor(chunk);
        inner.on('data', (data: Buffer) => outer.push(data));
        inner.on('error', (err) => outer.destroy(err));
      }
      if (inner.write(chunk)) done();
      else inner.once('drain', () => done());
    },
    flush(done) {
      if (inner === undefined) {
        done();
        return;
      }
      inner.once('end', () => done());
      inner.end();
    },
  });
  return outer;
}

/** A tar path made relative and normal; undefined for the root itself; throws on `..`. */
export function entryPath(name: string): string | undefined {
  const normal = posix.normalize(`/${name}`).slice(1).replace(/\/$/, '');
  if (normal.split('/').includes('..')) throw new InvalidArgumentError(`layer entry "${name}" leaves the layer`);
  return normal === '' ? undefined : normal;
}

async function exists(path: string): Promise<import('node:fs').Stats | undefined> {
  return lstat(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
}

class Unpacker {
  /** Folders known to be real folders inside the target (not symlinks). */
  private readonly safe = new Set<string>(['']);
  /** Paths this layer wrote: an opaque marker hides only what lower layers had. */
  private readonly written = new Set<string>();
  /** Folder times are set last: writing into a folder changes its mtime. */
  private readonly dirTimes: [string, Date][] = [];
  private readonly opaque: string[] = [];

  constructor(
    private readonly root: string,
    private readonly mode: UnpackMode,
  ) {}

  /** Makes sure every parent of `rel` is a real folder in the target, creating missing ones. */
  private async parents(rel: string): Promise<void> {
    const parts = rel.split('/').slice(0, -1);
    let current = '';
    for (const part of parts) {
      current = current === '' ? part : `${current}/${part}`;
      if (this.safe.has(current)) continue;
      const stats = await exists(join(this.root, current));
      if (stats === undefined) await mkdir(join(this.root, current), { mode: 0o755 });
      else if (stats.isSymbolicLink())
        throw new InvalidArgumentError(`layer entry "${rel}" goes through the symlink "${current}"`);
      else if (!stats.isDirectory()) throw new InvalidArgumentError(`layer entry "${rel}" goes through the file "${current}"`);
      this.safe.add(current);
    }
  }

  /** Clears the way for a new entry at `rel`: a folder stays when the entry is a folder too. */
  private async clear(rel: string, keepDir: boolean): Promise<void> {
    const path = join(this.root, rel);
    const stats = await exists(path);
    if (stats === undefined) return;
    if (keepDir && stats.isDirectory()) return;
    await rm(path, { recursive: true, force: true });
    for (const known of this.safe) if (known === rel || known.startsWith(`${rel}/`)) this.safe.delete(known);
  }

  private async whiteout(dir: string, name: string): Promise<void> {
    const rel = dir === '' ? name : `${dir}/${name}`;
    if (entryPath(rel) !== rel) throw new InvalidArgumentError(`whiteout "${rel}" is not a plain name`);
    await this.parents(rel);
    await this.clear(rel, false);
    // overlayfs' whiteout: a character device 0/0 (Documentation/filesystems/overlayfs.rst).
    if (this.mode === 'overlay') await run('mknod', [join(this.root, rel), 'c', '0', '0']);
  }

  private async makeOpaque(dir: string): Promise<void> {
    if (dir !== '') await this.parents(`${dir}/x`);
    const path = join(this.root, dir);
    if (this.mode === 'overlay') {
      this.opaque.push(path);
      return;
    }
    for (const name of await readdir(path)) {
      const rel = dir === '' ? name : `${dir}/${name}`;
      if (!this.written.has(rel)) await this.clear(rel, false);
    }
  }

  async entry(entry: TarEntry): Promise<void> {
    const header = entry.header;
    const rel = entryPath(header.name);
    const base = rel === undefined ? '' : posix.basename(rel);
    const dir = rel === undefined ? '' : posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    if (rel !== undefined && base === OPAQUE) {
      entry.resume();
      await this.makeOpaque(dir);
      return;
    }
    if (rel !== undefined && base.startsWith(WHITEOUT)) {
      entry.resume();
      await this.whiteout(dir, base.slice(WHITEOUT.length));
      return;
    }
    const path = rel === undefined ? this.root : join(this.root, rel);
    if (rel !== undefined) {
      await this.parents(rel);
      await this.clear(rel, header.type === 'directory');
      this.written.add(rel);
    }
    const mode = header.mode & 0o7777;
    switch (header.type) {
      case 'directory':
        await mkdir(path, { recursive: true, mode: 0o755 });
        if (rel !== undefined) this.safe.add(rel);
        this.dirTimes.push([path, header.mtime]);
        entry.resume();
        break;
      case 'file':
      case 'contiguous-file':
        // 'wx': never through something already there (clear() removed it), never via a symlink.
        await pipeline(entry, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
        break;
      case 'symlink':
        entry.resume();
        await symlink(header.linkname, path);
        break;
      case 'link': {
        entry.resume();
        const target = entryPath(header.linkname);
        if (target === undefined) throw new InvalidArgumentError(`hard link "${header.name}" has no target`);
        await this.parents(target);
        await link(join(this.root, target), path);
        return; // a hard link shares its target's owner, mode and times
      }
      case 'character-device':
      case 'block-device':
        entry.resume();
        await run('mknod', [
          path,
          header.type === 'character-device' ? 'c' : 'b',
          String(header.devmajor),
          String(header.devminor),
        ]);
        break;
      case 'fifo':
        entry.resume();
        await run('mknod', [path, 'p']);
        break;
    }
    await lchown(path, header.uid, header.gid);
    if (header.type !== 'symlink') await chmod(path, mode); // after chown, which clears setuid bits
    await this.xattrs(entry, path);
    if (header.type !== 'directory') await lutimes(path, header.mtime, header.mtime);
  }

  /** PAX `SCHILY.xattr.*` records: file capabilities (e.g. ping's cap_net_raw) live there. */
  private async xattrs(entry: TarEntry, path: string): Promise<void> {
    const pax = (entry.header.pax ?? {}) as Record<string, string>;
    for (const [key, value] of Object.entries(pax)) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const hex = Buffer.from(value, 'latin1').toString('hex');
      await run('setfattr', ['-h', '-n', key.slice('SCHILY.xattr.'.length), '-v', `0x${hex}`, path]);
    }
  }

  async finish(): Promise<void> {
    for (const path of this.opaque) await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path]);
    for (const [path, time] of this.dirTimes.reverse()) await lutimes(path, time, time);
  }
}

/**
 * Unpacks one layer blob into `target` and returns the digest of the uncompressed tar (the
 * layer's diff id), which the caller checks against the image config's `rootfs.diff_ids`.
 */
export async function unpackLayer(source: Readable, target: string, mode: UnpackMode): Promise<string> {
  await mkdir(target, { recursive: true });
  const hash = createHash('sha256');
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const unpacker = new Unpacker(target, mode);
  const tar = extract();
  const consume = (async () => {
    try {
      for await (const entry of tar) await unpacker.entry(entry);
    } catch (err) {
      // Stops the download and decompression too, instead of leaving them waiting.
      tar.destroy(err as Error);
      throw err;
    }
  })();
  await Promise.all([pipeline(source, decompress(), tee, tar), consume]);
  await unpacker.finish();
  return `sha256:${hash.digest('hex')}`;
}
