import { nowNanos } from '../time.js';
import type { CgroupTree } from './cgroup-files.js';

/**
 * A cgroup's usage, read as the kubelet's cAdvisor reads it. Counters are bigint because the CRI's
 * UInt64Value fields are (ts-proto forceLong=bigint) and nanosecond counters pass 2^53 in ~104 days.
 */
export interface CgroupStats {
  /** When the files were read, in nanoseconds since the epoch (the CRI's timestamp unit). */
  timestamp: bigint;
  /** CPU time used by all the cgroup's processes since it was created (usage_core_nano_seconds). */
  cpuUsageNanos: bigint;
  memoryUsageBytes: bigint;
  /** Usage minus inactive file cache: what the kubelet evicts on and the OOM killer can not reclaim. */
  workingSetBytes: bigint;
  rssBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** Processes (v1/v2 pids.current, or the count of cgroup.procs where the pids controller is absent). */
  processes: number;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events) as a map. */
export function parseFlatKeyed(text: string | undefined): Map<string, bigint> {
  const values = new Map<string, bigint>();
  for (const line of (text ?? '').split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key !== undefined && value !== undefined && /^[0-9]+$/.test(value)) values.set(key, BigInt(value));
  }
  return values;
}

function number(text: string | undefined): bigint {
  const trimmed = text?.trim() ?? '';
  return /^[0-9]+$/.test(trimmed) ? BigInt(trimmed) : 0n;
}

/** Reads a cgroup's stats; a controller that is not mounted reads as zero. */
export async function readStats(tree: CgroupTree, cgroup: string): Promise<CgroupStats> {
  const timestamp = nowNanos();
  const pidsCurrent = await tree.read(cgroup, 'pids.current');
  const processes = pidsCurrent !== undefined ? Number(number(pidsCurrent)) : (await tree.pids(cgroup)).length;
  if (tree.version === 1) {
    // v1 memory.stat's total_* fields count the whole subtree, like memory.usage_in_bytes.
    const stat = parseFlatKeyed(await tree.read(cgroup, 'memory.stat'));
    const usage = number(await tree.read(cgroup, 'memory.usage_in_bytes'));
    return {
      timestamp,
      cpuUsageNanos: number(await tree.read(cgroup, 'cpuacct.usage')),
      memoryUsageBytes: usage,
      workingSetBytes: workingSet(usage, stat.get('total_inactive_file')),
      rssBytes: stat.get('total_rss') ?? 0n,
      pageFaults: stat.get('total_pgfault') ?? 0n,
      majorPageFaults: stat.get('total_pgmajfault') ?? 0n,
      processes,
    };
  }
  const stat = parseFlatKeyed(await tree.read(cgroup, 'memory.stat'));
  const usage = number(await tree.read(cgroup, 'memory.current'));
  return {
    timestamp,
    cpuUsageNanos: (parseFlatKeyed(await tree.read(cgroup, 'cpu.stat')).get('usage_usec') ?? 0n) * 1000n,
    memoryUsageBytes: usage,
    workingSetBytes: workingSet(usage, stat.get('inactive_file')),
    // cAdvisor reports v2's anonymous memory as RSS.
    rssBytes: stat.get('anon') ?? 0n,
    pageFaults: stat.get('pgfault') ?? 0n,
    majorPageFaults: stat.get('pgmajfault') ?? 0n,
    processes,
  };
}

/** cAdvisor's working set: usage minus inactive file pages, never below zero. */
function workingSet(usage: bigint, inactiveFile: bigint | undefined): bigint {
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

/** Whether the kernel's OOM killer killed a process of the cgroup (v1 memory.oom_control, v2 memory.events). */
export async function readOomKilled(tree: CgroupTree, cgroup: string): Promise<boolean> {
  const file = tree.version === 1 ? 'memory.oom_control' : 'memory.events';
  return (parseFlatKeyed(await tree.read(cgroup, file)).get('oom_kill') ?? 0n) > 0n;
}
