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
  /** Times usage hit the limit (v1 memory.failcnt, v2 memory.events max). */
  memoryFailcnt: bigint;
  /** The highest usage seen (v1 memory.max_usage_in_bytes, v2 memory.peak); 0 when the kernel keeps none. */
  memoryMaxUsageBytes: bigint;
  /** Kernel memory (v1 memory.kmem.usage_in_bytes, v2 memory.stat kernel, else kernel_stack). */
  kernelMemoryBytes: bigint;
  /** Swap in use (v1 memsw usage less memory usage, v2 memory.swap.current). */
  swapBytes: bigint;
  /** Processes (v1/v2 pids.current, or the count of cgroup.procs where the pids controller is absent). */
  processes: number;
  /** pids.max; 0 when unlimited or unknown (cAdvisor's container_threads_max convention). */
  processesLimit: bigint;
  /** Block I/O per device, as the throttling/io accounting counts it. */
  io: DeviceIo[];
  /** The limits in force, read back from the cgroup (cAdvisor's container_spec_*). */
  limits: CgroupLimits;
}

export interface DeviceIo {
  major: number;
  minor: number;
  readBytes: bigint;
  writeBytes: bigint;
  reads: bigint;
  writes: bigint;
}

/** Limits as cAdvisor reports them: 0 is "none" for every value. */
export interface CgroupLimits {
  cpuPeriod: bigint;
  cpuQuota: bigint;
  cpuShares: bigint;
  memoryBytes: bigint;
  /** v1: memory + swap (memsw); v2: swap alone (memory.swap.max), as each kernel names it. */
  memorySwapBytes: bigint;
  /** The soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low). */
  memoryReservationBytes: bigint;
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

/**
 * A memory value as cAdvisor reports it: above 2^62 is the kernel's "unlimited" (v1 rounds
 * PAGE_COUNTER_MAX to 9223372036854771712), reported as 0.
 */
function limit(value: bigint): bigint {
  return value > 1n << 62n ? 0n : value;
}

/** Reads a cgroup's stats; a controller that is not mounted reads as zero. */
export async function readStats(tree: CgroupTree, cgroup: string): Promise<CgroupStats> {
  const timestamp = nowNanos();
  // Every file at once: a pod listing reads a few dozen small files per container.
  const files: readonly string[] = [
    'pids.current',
    'pids.max',
    'cpu.stat',
    'memory.stat',
    ...(tree.version === 1 ? V1_FILES : V2_FILES),
  ];
  const texts = await Promise.all(files.map((file) => tree.read(cgroup, file)));
  const read = (file: string): string | undefined => texts[files.indexOf(file)];
  const pidsCurrent = read('pids.current');
  const processes = pidsCurrent !== undefined ? Number(number(pidsCurrent)) : (await tree.pids(cgroup)).length;
  const processesLimit = number(read('pids.max'));
  const cpuStat = parseFlatKeyed(read('cpu.stat'));
  const stat = parseFlatKeyed(read('memory.stat'));
  if (tree.version === 1) {
    // v1 memory.stat's total_* fields count the whole subtree, like memory.usage_in_bytes.
    const usage = number(read('memory.usage_in_bytes'));
    const memsw = read('memory.memsw.usage_in_bytes');
    const user = read('cpuacct.usage_user');
    const system = read('cpuacct.usage_sys');
    // cpuacct.usage_user/usage_sys in nanoseconds (Linux >= 4.7), else cpuacct.stat's ticks, as runc's cgroups/fs/cpuacct.go falls back.
    const ticks = parseFlatKeyed(read('cpuacct.stat'));
    const quota = read('cpu.cfs_quota_us')?.trim() ?? '';
    return {
      timestamp,
      cpuUsageNanos: number(read('cpuacct.usage')),
      cpuUserNanos: user !== undefined ? number(user) : (ticks.get('user') ?? 0n) * NANOS_PER_USER_HZ_TICK,
      cpuSystemNanos: system !== undefined ? number(system) : (ticks.get('system') ?? 0n) * NANOS_PER_USER_HZ_TICK,
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
      oomKills: parseFlatKeyed(read('memory.oom_control')).get('oom_kill') ?? 0n,
      memoryFailcnt: number(read('memory.failcnt')),
      memoryMaxUsageBytes: number(read('memory.max_usage_in_bytes')),
      kernelMemoryBytes: number(read('memory.kmem.usage_in_bytes')),
      swapBytes: memsw !== undefined ? (number(memsw) > usage ? number(memsw) - usage : 0n) : (stat.get('total_swap') ?? 0n),
      processes,
      processesLimit,
      io: v1Io(read('blkio.throttle.io_service_bytes_recursive'), read('blkio.throttle.io_serviced_recursive')),
      limits: {
        cpuPeriod: number(read('cpu.cfs_period_us')),
        cpuQuota: quota.startsWith('-') ? 0n : number(quota),
        cpuShares: number(read('cpu.shares')),
        memoryBytes: limit(number(read('memory.limit_in_bytes'))),
        memorySwapBytes: limit(number(read('memory.memsw.limit_in_bytes'))),
        memoryReservationBytes: limit(number(read('memory.soft_limit_in_bytes'))),
      },
    };
  }
  const usage = number(read('memory.current'));
  const [quota = '', period = ''] = (read('cpu.max') ?? '').trim().split(/\s+/);
  const weight = number(read('cpu.weight'));
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
    oomKills: parseFlatKeyed(read('memory.events')).get('oom_kill') ?? 0n,
    memoryFailcnt: parseFlatKeyed(read('memory.events')).get('max') ?? 0n,
    memoryMaxUsageBytes: number(read('memory.peak')),
    kernelMemoryBytes: stat.get('kernel') ?? stat.get('kernel_stack') ?? 0n,
    swapBytes: number(read('memory.swap.current')),
    processes,
    processesLimit,
    io: v2Io(read('io.stat')),
    limits: {
      cpuPeriod: number(period),
      cpuQuota: number(quota),
      // The inverse of sharesToWeight (resources.ts), as cAdvisor converts cpu.weight back.
      cpuShares: weight === 0n ? 0n : 2n + ((weight - 1n) * 262_142n) / 9_999n,
      memoryBytes: limit(number(read('memory.max'))),
      memorySwapBytes: limit(number(read('memory.swap.max'))),
      memoryReservationBytes: limit(number(read('memory.low'))),
    },
  };
}

const V1_FILES = [
  'cpuacct.usage',
  'cpuacct.usage_user',
  'cpuacct.usage_sys',
  'cpuacct.stat',
  'cpu.cfs_period_us',
  'cpu.cfs_quota_us',
  'cpu.shares',
  'memory.usage_in_bytes',
  'memory.max_usage_in_bytes',
  'memory.failcnt',
  'memory.kmem.usage_in_bytes',
  'memory.memsw.usage_in_bytes',
  'memory.limit_in_bytes',
  'memory.memsw.limit_in_bytes',
  'memory.soft_limit_in_bytes',
  'memory.oom_control',
  'blkio.throttle.io_service_bytes_recursive',
  'blkio.throttle.io_serviced_recursive',
] as const;

const V2_FILES = [
  'cpu.max',
  'cpu.weight',
  'memory.current',
  'memory.peak',
  'memory.swap.current',
  'memory.max',
  'memory.swap.max',
  'memory.low',
  'memory.events',
  'io.stat',
] as const;

/** One device's entry of a per-device table, made on first sight. */
function deviceEntry(devices: Map<string, DeviceIo>, device: string): DeviceIo | undefined {
  const [major, minor] = device.split(':').map(Number);
  if (major === undefined || minor === undefined || !Number.isInteger(major) || !Number.isInteger(minor)) return undefined;
  let entry = devices.get(device);
  if (entry === undefined) {
    entry = { major, minor, readBytes: 0n, writeBytes: 0n, reads: 0n, writes: 0n };
    devices.set(device, entry);
  }
  return entry;
}

/** v1 blkio "8:0 Read 4096" lines (bytes, then operations); the "Total" line and other operations are left out. */
function v1Io(bytes: string | undefined, ops: string | undefined): DeviceIo[] {
  const devices = new Map<string, DeviceIo>();
  for (const [text, field] of [
    [bytes, 'Bytes'],
    [ops, 'Ops'],
  ] as const) {
    for (const line of (text ?? '').split('\n')) {
      const [device = '', op = '', value = ''] = line.trim().split(/\s+/);
      if (!/^[0-9]+$/.test(value) || (op !== 'Read' && op !== 'Write')) continue;
      const entry = deviceEntry(devices, device);
      if (entry === undefined) continue;
      if (field === 'Bytes') entry[op === 'Read' ? 'readBytes' : 'writeBytes'] = BigInt(value);
      else entry[op === 'Read' ? 'reads' : 'writes'] = BigInt(value);
    }
  }
  return [...devices.values()];
}

/** v2 io.stat "8:0 rbytes=1 wbytes=2 rios=3 wios=4 …" lines. */
function v2Io(text: string | undefined): DeviceIo[] {
  const devices = new Map<string, DeviceIo>();
  for (const line of (text ?? '').split('\n')) {
    const [device = '', ...pairs] = line.trim().split(/\s+/);
    const values = new Map(pairs.map((pair) => pair.split('=') as [string, string]));
    const get = (key: string) => (/^[0-9]+$/.test(values.get(key) ?? '') ? BigInt(values.get(key) ?? '0') : 0n);
    if (!values.has('rbytes')) continue;
    const entry = deviceEntry(devices, device);
    if (entry === undefined) continue;
    Object.assign(entry, { readBytes: get('rbytes'), writeBytes: get('wbytes'), reads: get('rios'), writes: get('wios') });
  }
  return [...devices.values()];
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
