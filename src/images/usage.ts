import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Usage {
  /** Bytes allocated on disk (blocks × 512, as `du` counts them). */
  bytes: bigint;
  /** Files, folders and links, the folder itself included. */
  inodes: bigint;
}

/** ENOENT: a file that went away between the folder's listing and its stat. */
const gone = (err: unknown): undefined => {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw err;
};

/**
 * What a folder tree really takes on disk, hard links counted once. The store changes while it
 * is walked (a record saved aside then renamed, a layer collected): what has gone is not counted.
 */
export async function directoryUsage(dir: string): Promise<Usage> {
  await mkdir(dir, { recursive: true });
  const seen = new Set<bigint>();
  let bytes = 0n;
  let inodes = 0n;
  const walk = async (path: string): Promise<void> => {
    const stats = await lstat(path, { bigint: true }).catch(gone);
    if (stats === undefined || seen.has(stats.ino)) return;
    seen.add(stats.ino);
    inodes += 1n;
    bytes += stats.blocks * 512n;
    if (stats.isDirectory()) {
      for (const name of (await readdir(path).catch(gone)) ?? []) await walk(join(path, name));
    }
  };
  await walk(dir);
  return { bytes, inodes };
}

/** The image store's folder under icetray's root. */
export function imageStoreDir(rootDir: string): string {
  return join(rootDir, 'images');
}
