import { readFile } from 'node:fs/promises';

export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
}

/**
 * The interface counters of the network namespace a process is in: /proc/<pid>/net/dev shows
 * the namespace of <pid>, so pause's pid gives the pod's.
 */
export async function netDevOf(pid: number): Promise<InterfaceCounters[]> {
  const text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  const interfaces: InterfaceCounters[] = [];
  // Two header lines, then "  eth0: rxBytes rxPackets rxErrs … (8 receive) txBytes txPackets txErrs …".
  for (const line of text.split('\n').slice(2)) {
    const [name, counters] = line.split(':');
    if (name === undefined || counters === undefined) continue;
    const fields = counters
      .trim()
      .split(/\s+/)
      .map((field) => BigInt(field));
    interfaces.push({
      name: name.trim(),
      rxBytes: fields[0] ?? 0n,
      rxErrors: fields[2] ?? 0n,
      txBytes: fields[8] ?? 0n,
      txErrors: fields[10] ?? 0n,
    });
  }
  return interfaces;
}
