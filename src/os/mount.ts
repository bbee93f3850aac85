import { readFile, rm } from 'node:fs/promises';
import { run } from './exec.js';

/**
 * Unmounts `path` if something is mounted there. umount's answer alone cannot tell "nothing was
 * mounted" (a pin file a crash left before its bind mount) from a real failure, and its wording
 * varies: when it fails, the mount table decides.
 */
export async function unmountIfMounted(path: string): Promise<void> {
  try {
    await run('umount', [path]);
  } catch (err) {
    if ((await mountPoints()).includes(path)) throw err;
  }
}

/** Unmounts and deletes a mount point; one already unmounted or gone is fine (removal is idempotent). */
export async function unmountAndRemove(path: string, recursive = false): Promise<void> {
  await unmountIfMounted(path);
  await rm(path, { recursive, force: true });
}

/**
 * Unmounts every mount at or below each of `dirs`, deepest first: what a crash left mounted under
 * a pod's or a container's folders (namespace pins, /dev/shm, a rootfs), whatever icetray
 * recorded of it. The mount table is read once, however many folders.
 */
export async function unmountAllUnder(...dirs: string[]): Promise<void> {
  const below = (await mountPoints()).filter((point) => dirs.some((dir) => point === dir || point.startsWith(`${dir}/`)));
  for (const point of below.sort((a, b) => b.length - a.length)) {
    // A mount something still uses (a shell's cwd) is detached now and goes when released.
    await run('umount', [point]).catch(() => run('umount', ['--lazy', point]));
  }
}

/** The mount points of icetray's mount namespace, in mountinfo order. */
async function mountPoints(): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => unescape(line.split(' ')[4] ?? ''));
}

/** The mount that holds a path, as /proc/self/mountinfo describes it. */
export interface MountInfo {
  mountPoint: string;
  /** In a peer group: mounts and unmounts propagate both ways ("shared:N"). */
  shared: boolean;
  /** Receives propagation from a master group ("master:N"). */
  slave: boolean;
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040). */
const unescape = (field: string): string =>
  field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));

/** Finds the mount holding `path` (a real path): the longest mount point that contains it. */
export async function mountHolding(path: string): Promise<MountInfo> {
  let best: MountInfo = { mountPoint: '/', shared: false, slave: false };
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount
    // point, optional fields run from 7 up to the "-".
    const fields = line.split(' ');
    const mountPoint = unescape(fields[4] ?? '');
    const inside = mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
    if (mountPoint === '' || !inside || mountPoint.length < best.mountPoint.length) continue;
    const optional = fields.slice(6, fields.indexOf('-'));
    best = {
      mountPoint,
      shared: optional.some((field) => field.startsWith('shared:')),
      slave: optional.some((field) => field.startsWith('master:')),
    };
  }
  return best;
}
