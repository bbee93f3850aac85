import { readdir, readlink } from 'node:fs/promises';

/** Open file descriptors and, of them, sockets (container_file_descriptors, container_sockets). */
export interface OpenFiles {
  fds: bigint;
  sockets: bigint;
}

/**
 * Sockets are told apart by their link ("socket:[…]"), one readlink each: past this many
 * descriptors per reading the rest are counted as descriptors but not looked at, so a container
 * that opens a million files costs one readdir per process, not a million readlinks per scrape.
 */
const MAX_LINKS_READ = 10_000;

/** Counts the descriptors of these processes (/proc/<pid>/fd), as cAdvisor does; a process gone meanwhile counts none. */
export async function openFiles(pids: readonly number[], proc = '/proc'): Promise<OpenFiles> {
  let fds = 0n;
  let sockets = 0n;
  let budget = MAX_LINKS_READ;
  for (const pid of pids) {
    const dir = `${proc}/${pid}/fd`;
    const names = await readdir(dir).catch(() => [] as string[]);
    fds += BigInt(names.length);
    for (const name of names) {
      if (budget-- <= 0) break;
      const target = await readlink(`${dir}/${name}`).catch(() => '');
      if (target.startsWith('socket:')) sockets++;
    }
  }
  return { fds, sockets };
}
