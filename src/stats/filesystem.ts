import { readFile, stat, statfs } from 'node:fs/promises';

/** A filesystem's size as cAdvisor reports it for container_fs_* (device, limit, inodes). */
export interface FilesystemInfo {
  /** The mount's source, as cAdvisor names devices ("/dev/vda1"), else "major:minor". */
  device: string;
  capacityBytes: bigint;
  inodes: bigint;
  inodesFree: bigint;
}

/**
 * statfs of the folder, and the device it is on, found in /proc/self/mountinfo by the folder's
 * st_dev (field 3 is "major:minor", the source follows the " - fstype " separator).
 */
export async function filesystemOf(path: string, mountinfo = '/proc/self/mountinfo'): Promise<FilesystemInfo> {
  const [fs, st, table] = await Promise.all([
    statfs(path, { bigint: true }),
    stat(path, { bigint: true }),
    readFile(mountinfo, 'utf8').catch(() => ''),
  ]);
  // glibc's gnu_dev_major/minor: the 64-bit dev_t keeps 12 + 20 bits of major, 8 + 24 of minor.
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
  const id = `${major}:${minor}`;
  const line = table.split('\n').find((l) => l.split(' ')[2] === id);
  const source = line?.split(' - ')[1]?.split(' ')[1];
  return {
    device: source !== undefined && source.startsWith('/') ? source : id,
    capacityBytes: fs.blocks * fs.bsize,
    inodes: fs.files,
    inodesFree: fs.ffree,
  };
}
