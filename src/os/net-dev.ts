import { readFile } from 'node:fs/promises';

export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

/**
 * The interface counters of the network namespace a process is in: /proc/<pid>/net/dev shows
 * the namespace of <pid>, so pause's pid gives the pod's.
 */
export async function netDevOf(pid: number): Promise<InterfaceCounters[]> {
  const text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  const interfaces: InterfaceCounters[] = [];
  // Two header lines, then "  eth0: bytes packets errs drop … (8 receive columns), bytes packets errs drop … (transmit)".
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
      rxPackets: fields[1] ?? 0n,
      rxErrors: fields[2] ?? 0n,
      rxDropped: fields[3] ?? 0n,
      txBytes: fields[8] ?? 0n,
      txPackets: fields[9] ?? 0n,
      txErrors: fields[10] ?? 0n,
      txDropped: fields[11] ?? 0n,
    });
  }
  return interfaces;
}
