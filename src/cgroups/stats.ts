import { nowNanos } from '../time.js';
import type { CgroupTree } from './cgroup-files.js';

/**
 * A cgroup's usage, read as the kubelet's cAdvisor reads it. Counters are bigint because the CRI's
 * UInt64Value fields are (ts-proto forceLong=bigint) and nanosecond counters pass 2^53 in ~104 days.
 * The stats RPCs and the cAdvisor-style metrics (src/stats/metrics.ts) are both built from this one
 * reading, so the two can never disagree.
 */
export interface CgroupStats {
  /** When the files were read, in nanoseconds since the epoch (the CRI's timestamp unit). */
  timestamp: bigint;
  /** CPU time used by all the cgroup's processes since it was created (usage_core_nano_seconds). */
  cpuUsageNanos: bigint;
  /** The part of it spent in user mode and in the kernel (container_cpu_user/system_seconds_total). */
  cpuUserNanos: bigint;
  cpuSystemNanos: bigint;
  /** CFS bandwidth control: elapsed periods, periods throttled and time throttled (cpu.stat). */
  cpuPeriods: bigint;
  cpuThrottledPeriods: bigint;
  cpuThrottledNanos: bigint;
  memoryUsageBytes: bigint;
  /** Usage minus inactive file cache: what the kubelet evicts on and the OOM killer can not reclaim. */
  workingSetBytes: bigint;
  rssBytes: bigint;
  /** Page cache charged to the cgroup (v1 total_cache, v2 file). */
  cacheBytes: bigint;
  /** Memory-mapped files (v1 total_mapped_file, v2 file_mapped). */
  mappedFileBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** Processes the kernel's OOM killer killed in the cgroup (v1 memory.oom_control, v2 memory.events oom_kill). */
  oomKills: bigint;
  /** Processes (v1/v2 pids.current, or the count of cgroup.procs where the pids controller is absent). */
  processes: number;
  /** pids.max; 0 when unlimited or unknown (cAdvisor's container_threads_max convention). */
  processesLimit: bigint;
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

/**
 * cpuacct.stat counts in USER_HZ ticks, which the kernel fixes at 100 a second for every
 * userspace ABI (times(2)): one tick is 10 ms.
 */
const NANOS_PER_USER_HZ_TICK = 10_000_000n;

/** Reads a cgroup's stats; a controller that is not mounted reads as zero. */
export async function readStats(tree: CgroupTree, cgroup: string): Promise<CgroupStats> {
  const timestamp = nowNanos();
  const pidsCurrent = await tree.read(cgroup, 'pids.current');
  const processes = pidsCurrent !== undefined ? Number(number(pidsCurrent)) : (await tree.pids(cgroup)).length;
  const processesLimit = number(await tree.read(cgroup, 'pids.max'));
  const oomKills = await readOomKills(tree, cgroup);
  const cpuStat = parseFlatKeyed(await tree.read(cgroup, 'cpu.stat'));
  const stat = parseFlatKeyed(await tree.read(cgroup, 'memory.stat'));
  if (tree.version === 1) {
    // v1 memory.stat's total_* fields count the whole subtree, like memory.usage_in_bytes.
    const usage = number(await tree.read(cgroup, 'memory.usage_in_bytes'));
    const { user, system } = await readV1CpuModes(tree, cgroup);
    return {
      timestamp,
      cpuUsageNanos: number(await tree.read(cgroup, 'cpuacct.usage')),
      cpuUserNanos: user,
      cpuSystemNanos: system,
      cpuPeriods: cpuStat.get('nr_periods') ?? 0n,
      cpuThrottledPeriods: cpuStat.get('nr_throttled') ?? 0n,
      cpuThrottledNanos: cpuStat.get('throttled_time') ?? 0n,
      memoryUsageBytes: usage,
      workingSetBytes: workingSet(usage, stat.get('total_inactive_file')),
      rssBytes: stat.get('total_rss') ?? 0n,
      cacheBytes: stat.get('total_cache') ?? 0n,
      mappedFileBytes: stat.get('total_mapped_file') ?? 0n,
      pageFaults: stat.get('total_pgfault') ?? 0n,
      majorPageFaults: stat.get('total_pgmajfault') ?? 0n,
      oomKills,
      processes,
      processesLimit,
    };
  }
  const usage = number(await tree.read(cgroup, 'memory.current'));
  return {
    timestamp,
    cpuUsageNanos: (cpuStat.get('usage_usec') ?? 0n) * 1000n,
    cpuUserNanos: (cpuStat.get('user_usec') ?? 0n) * 1000n,
    cpuSystemNanos: (cpuStat.get('system_usec') ?? 0n) * 1000n,
    cpuPeriods: cpuStat.get('nr_periods') ?? 0n,
    cpuThrottledPeriods: cpuStat.get('nr_throttled') ?? 0n,
    cpuThrottledNanos: (cpuStat.get('throttled_usec') ?? 0n) * 1000n,
    memoryUsageBytes: usage,
    workingSetBytes: workingSet(usage, stat.get('inactive_file')),
    // cAdvisor reports v2's anonymous memory as RSS.
    rssBytes: stat.get('anon') ?? 0n,
    cacheBytes: stat.get('file') ?? 0n,
    mappedFileBytes: stat.get('file_mapped') ?? 0n,
    pageFaults: stat.get('pgfault') ?? 0n,
    majorPageFaults: stat.get('pgmajfault') ?? 0n,
    oomKills,
    processes,
    processesLimit,
  };
}

/**
 * v1 user and kernel CPU time: cpuacct.usage_user/usage_sys in nanoseconds (Linux ≥ 4.7), else
 * cpuacct.stat's ticks, as runc's cgroups/fs/cpuacct.go falls back.
 */
async function readV1CpuModes(tree: CgroupTree, cgroup: string): Promise<{ user: bigint; system: bigint }> {
  const user = await tree.read(cgroup, 'cpuacct.usage_user');
  const system = await tree.read(cgroup, 'cpuacct.usage_sys');
  if (user !== undefined && system !== undefined) return { user: number(user), system: number(system) };
  const ticks = parseFlatKeyed(await tree.read(cgroup, 'cpuacct.stat'));
  return {
    user: (ticks.get('user') ?? 0n) * NANOS_PER_USER_HZ_TICK,
    system: (ticks.get('system') ?? 0n) * NANOS_PER_USER_HZ_TICK,
  };
}

/** cAdvisor's working set: usage minus inactive file pages, never below zero. */
function workingSet(usage: bigint, inactiveFile: bigint | undefined): bigint {
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

/** How many processes of the cgroup the kernel's OOM killer killed (v1 memory.oom_control, v2 memory.events). */
async function readOomKills(tree: CgroupTree, cgroup: string): Promise<bigint> {
  const file = tree.version === 1 ? 'memory.oom_control' : 'memory.events';
  return parseFlatKeyed(await tree.read(cgroup, file)).get('oom_kill') ?? 0n;
}

/** Whether the kernel's OOM killer killed a process of the cgroup. */
export async function readOomKilled(tree: CgroupTree, cgroup: string): Promise<boolean> {
  return (await readOomKills(tree, cgroup)) > 0n;
}
