import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** A process as /proc shows it. */
export interface ProcessInfo {
  pid: number;
  command: string;
}

/**
 * Every process whose namespace of kind `ns` (net, ipc, uts, pid, mnt) has the given inode:
 * who really shares a namespace, read from /proc/<pid>/ns/<ns> links ("net:[4026532180]").
 */
export function processesInNamespace(ns: string, inode: number): ProcessInfo[] {
  const wanted = `${ns}:[${inode}]`;
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/${ns}`) !== wanted) continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      found.push({ pid: Number(entry), command });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}
