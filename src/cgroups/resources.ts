import { InvalidArgumentError } from '../errors.js';
import type { LinuxContainerResources } from '../generated/api.js';

/**
 * CRI resources → cgroup file values, for v1 and v2, written once so both drivers agree.
 * A zero value means "not specified" in the CRI (api.proto, LinuxContainerResources) and writes
 * nothing; -1 means "no limit". oom_score_adj is per process (/proc/<pid>/oom_score_adj), not a
 * cgroup file, so it is not here.
 */

/** One value for one cgroup file (named as in the kernel's documentation, e.g. "memory.max"). */
export interface FileWrite {
  file: string;
  value: string;
  /** Written only where the file exists: v1 swap accounting can be compiled out or off (swapaccount=0). */
  ifExists?: boolean;
}

/** The kernel's CFS period when none is given (and the kubelet's). */
export const DEFAULT_CPU_PERIOD = 100_000n;

/**
 * cpu.shares (v1, 2…262144) → cpu.weight (v2, 1…10000), the linear map the kubelet and runc use
 * (libcontainer ConvertCPUSharesToCgroupV2Value) so pods weigh the same under either version.
 */
export function sharesToWeight(shares: bigint): bigint {
  if (shares === 0n) return 0n;
  const clamped = shares < 2n ? 2n : shares > 262_144n ? 262_144n : shares;
  return 1n + ((clamped - 2n) * 9_999n) / 262_142n;
}

/**
 * memory_swap_limit_in_bytes is memory + swap (Docker's --memory-swap, which the CRI took over); v2's
 * memory.swap.max counts swap alone, so it gets the difference (libcontainer ConvertMemorySwapToCgroupV2Value).
 */
export function swapToV2(memory: bigint, swap: bigint): string | undefined {
  if (swap === 0n) return undefined;
  if (swap === -1n) return 'max';
  if (memory <= 0n) {
    throw new InvalidArgumentError(
      'memory_swap_limit_in_bytes needs memory_limit_in_bytes on cgroup v2 (it counts memory plus swap)',
    );
  }
  if (swap < memory) {
    throw new InvalidArgumentError(
      `memory_swap_limit_in_bytes (${swap}) is smaller than memory_limit_in_bytes (${memory}): it counts memory plus swap`,
    );
  }
  return String(swap - memory);
}

/** "2MB", "1GB": the CRI's page size, which is also the kernel's spelling in hugetlb.<size>.* files. */
function checkPageSize(size: string): string {
  if (!/^[0-9]+[KMG]B$/.test(size))
    throw new InvalidArgumentError(`hugepage size ${JSON.stringify(size)} is not like "2MB" or "1GB"`);
  return size;
}

/** A unified key names a file of the cgroup itself: no path, no hidden file. */
function checkUnifiedKey(key: string): string {
  if (!/^[a-z_]+\.[A-Za-z0-9_.]+$/.test(key) || key.startsWith('cgroup.')) {
    throw new InvalidArgumentError(`unified key ${JSON.stringify(key)} is not a cgroup v2 resource file`);
  }
  return key;
}

/**
 * cpuset.cpus and cpuset.mems take the kernel's list format ("0-3,8,10-11"; cpuset(7)). A value
 * out of that grammar would reach the kernel only to be refused, or, empty items and all, be
 * read as an empty set in which no process can run.
 */
function checkCpuList(value: string, field: string): string {
  const items = value.split(',');
  const valid =
    value.length <= 1024 &&
    items.every((item) => {
      const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
      return match !== null && (match[2] === undefined || Number(match[1]) <= Number(match[2]));
    });
  if (!valid) throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 80))} is not a list like "0-3,8"`);
  return value;
}

/**
 * The smallest memory limit icetray sets. Below it not even the cgroups of pause and a container
 * can be made: the kernel charges their own structures to the limit, and mkdir fails with
 * ENOMEM (4 KiB did, in the fuzz run; 256 KiB still runs a shell). Such a limit is a mistake.
 */
export const MIN_MEMORY_LIMIT = 1024n * 1024n;

function checkMemoryLimit(limit: bigint): bigint {
  if (limit < MIN_MEMORY_LIMIT)
    throw new InvalidArgumentError(`memory_limit_in_bytes ${String(limit)} is below the 1 MiB a pod or container needs to exist`);
  return limit;
}

function positive(value: bigint): boolean {
  return value > 0n;
}

/**
 * The file writes for a container's (or pod's) resources, in the order to try them. On v1 some
 * pairs depend on each other (cfs period/quota, memory/memsw limits): the writer retries what
 * failed once the rest is written.
 */
export function resourceWrites(r: LinuxContainerResources, version: 1 | 2): FileWrite[] {
  const writes: FileWrite[] = [];
  const add = (file: string, value: string | bigint, ifExists = false) =>
    writes.push(ifExists ? { file, value: String(value), ifExists } : { file, value: String(value) });
  const unified = Object.entries(r.unified);
  if (version === 1) {
    if (unified.length > 0) throw new InvalidArgumentError('unified resources need cgroup v2; this node runs cgroup v1');
    if (positive(r.cpuShares)) add('cpu.shares', r.cpuShares);
    if (positive(r.cpuPeriod)) add('cpu.cfs_period_us', r.cpuPeriod);
    if (r.cpuQuota !== 0n) add('cpu.cfs_quota_us', r.cpuQuota < 0n ? -1n : r.cpuQuota);
    if (positive(r.memoryLimitInBytes)) add('memory.limit_in_bytes', checkMemoryLimit(r.memoryLimitInBytes));
    if (r.memorySwapLimitInBytes !== 0n)
      add('memory.memsw.limit_in_bytes', r.memorySwapLimitInBytes < 0n ? -1n : r.memorySwapLimitInBytes, true);
    for (const h of r.hugepageLimits) add(`hugetlb.${checkPageSize(h.pageSize)}.limit_in_bytes`, h.limit);
  } else {
    if (positive(r.cpuShares)) add('cpu.weight', sharesToWeight(r.cpuShares));
    if (r.cpuQuota !== 0n || positive(r.cpuPeriod)) {
      const period = positive(r.cpuPeriod) ? r.cpuPeriod : DEFAULT_CPU_PERIOD;
      add('cpu.max', `${positive(r.cpuQuota) ? String(r.cpuQuota) : 'max'} ${period}`);
    }
    if (positive(r.memoryLimitInBytes)) add('memory.max', checkMemoryLimit(r.memoryLimitInBytes));
    const swap = swapToV2(r.memoryLimitInBytes, r.memorySwapLimitInBytes);
    if (swap !== undefined) add('memory.swap.max', swap);
    for (const h of r.hugepageLimits) add(`hugetlb.${checkPageSize(h.pageSize)}.max`, h.limit);
  }
  if (r.cpusetCpus !== '') add('cpuset.cpus', checkCpuList(r.cpusetCpus, 'cpuset_cpus'));
  if (r.cpusetMems !== '') add('cpuset.mems', checkCpuList(r.cpusetMems, 'cpuset_mems'));
  // The unified map is written last so that it overrides, as runc applies it (runtime-spec, "Unified").
  for (const [key, value] of unified) add(checkUnifiedKey(key), value);
  return writes;
}

/**
 * A pod's cgroup holds its containers plus the sandbox's overhead (RuntimeClass overhead, KEP-688):
 * the kubelet sizes it as the sum, and so does icetray when it owns the pod cgroup.
 */
export function podResources(
  resources: LinuxContainerResources | undefined,
  overhead: LinuxContainerResources | undefined,
): LinuxContainerResources | undefined {
  if (resources === undefined || overhead === undefined) return resources ?? overhead;
  // A limit stays "none" when the containers set none (the kubelet's rule); a request always adds up.
  const limit = (a: bigint, b: bigint) => (a > 0n && b > 0n ? a + b : a);
  return {
    ...resources,
    cpuShares: resources.cpuShares + (positive(overhead.cpuShares) ? overhead.cpuShares : 0n),
    // The kubelet uses one CFS period for all (100 ms), so quotas add up.
    cpuQuota: limit(resources.cpuQuota, overhead.cpuQuota),
    memoryLimitInBytes: limit(resources.memoryLimitInBytes, overhead.memoryLimitInBytes),
    memorySwapLimitInBytes: limit(resources.memorySwapLimitInBytes, overhead.memorySwapLimitInBytes),
  };
}
