import { readFileSync, statfsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot), or
 * undefined when there is no such live process. Pids are reused: a pid plus its start time
 * names one process for good. A zombie counts as gone. Synchronous on purpose: a /proc read
 * never waits on a disk, and ListPodSandbox checks every pause each time the kubelet relists.
 */
export function processStartTime(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after it.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

/** The inode of a namespace file (/proc/<pid>/ns/net or a pinned copy): equal inodes, same namespace. */
export async function namespaceInode(path: string): Promise<number> {
  return (await stat(path)).ino;
}

/** nsfs, the filesystem of /proc/<pid>/ns/* links and of their bind mounts (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;

/** Whether `path` is a namespace: a live pin (bind mount of /proc/<pid>/ns/…), not the empty file under it. */
export function isNamespaceFile(path: string): boolean {
  try {
    return path !== '' && statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** Sends a signal; false when the process is already gone. */
export function signalProcess(pid: number, signal: NodeJS.Signals | number): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Resolves once the process (pid + start time) is gone. For a process icetray did not start in
 * this run, which it cannot wait for: /proc is polled.
 */
export async function processGone(pid: number, startTime: string, everyMs = 100): Promise<void> {
  while (processStartTime(pid) === startTime) await sleep(everyMs);
}
