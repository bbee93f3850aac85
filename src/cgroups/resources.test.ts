import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { LinuxContainerResources } from '../generated/api.js';
import { MIN_MEMORY_LIMIT, podResources, resourceWrites, sharesToWeight, swapToV2 } from './resources.js';

const r = (partial: Partial<LinuxContainerResources>) => LinuxContainerResources.fromPartial(partial);

describe('CRI resources to cgroup files', () => {
  it.each([
    [0n, 0n],
    [2n, 1n],
    [1024n, 39n],
    [262_144n, 10_000n],
    [1n, 1n],
  ])('maps cpu shares %d to cpu.weight %d as the kubelet and runc do', (shares, weight) => {
    expect(sharesToWeight(shares)).toBe(weight);
  });

  it('writes v1 files, period before quota, and memsw only where swap accounting exists', () => {
    expect(
      resourceWrites(
        r({
          cpuShares: 512n,
          cpuPeriod: 100_000n,
          cpuQuota: 50_000n,
          memoryLimitInBytes: 1n << 26n,
          memorySwapLimitInBytes: 1n << 26n,
        }),
        1,
      ),
    ).toEqual([
      { file: 'cpu.shares', value: '512' },
      { file: 'cpu.cfs_period_us', value: '100000' },
      { file: 'cpu.cfs_quota_us', value: '50000' },
      { file: 'memory.limit_in_bytes', value: '67108864' },
      { file: 'memory.memsw.limit_in_bytes', value: '67108864', ifExists: true },
    ]);
  });

  it('writes v2 files: weight, cpu.max with the default period, swap as the part beyond memory', () => {
    expect(
      resourceWrites(
        r({ cpuShares: 1024n, cpuQuota: 20_000n, memoryLimitInBytes: 1n << 26n, memorySwapLimitInBytes: 3n << 26n }),
        2,
      ),
    ).toEqual([
      { file: 'cpu.weight', value: '39' },
      { file: 'cpu.max', value: '20000 100000' },
      { file: 'memory.max', value: '67108864' },
      { file: 'memory.swap.max', value: '134217728' },
    ]);
    expect(resourceWrites(r({ cpuQuota: -1n, cpuPeriod: 50_000n }), 2)).toEqual([{ file: 'cpu.max', value: 'max 50000' }]);
  });

  it('writes cpusets, hugepage limits and the unified map (last, so it overrides)', () => {
    const res = r({
      cpusetCpus: '0-1',
      cpusetMems: '0',
      hugepageLimits: [{ pageSize: '2MB', limit: 0n }],
      unified: { 'memory.high': '500' },
    });
    expect(resourceWrites(res, 2).map((w) => `${w.file}=${w.value}`)).toEqual([
      'hugetlb.2MB.max=0',
      'cpuset.cpus=0-1',
      'cpuset.mems=0',
      'memory.high=500',
    ]);
    expect(() => resourceWrites(res, 1)).toThrow(/need cgroup v2/);
  });

  it('writes nothing for unspecified (zero) values', () => {
    expect(resourceWrites(r({}), 1)).toEqual([]);
    expect(resourceWrites(r({}), 2)).toEqual([]);
  });

  it('refuses bad unified keys, page sizes and a swap limit below the memory limit', () => {
    expect(() => resourceWrites(r({ unified: { '../x': '1' } }), 2)).toThrow(InvalidArgumentError);
    expect(() => resourceWrites(r({ unified: { 'cgroup.procs': '1' } }), 2)).toThrow(InvalidArgumentError);
    expect(() => resourceWrites(r({ hugepageLimits: [{ pageSize: '2M', limit: 1n }] }), 2)).toThrow(InvalidArgumentError);
    expect(() => swapToV2(2000n, 1000n)).toThrow(InvalidArgumentError);
    expect(swapToV2(2000n, -1n)).toBe('max');
  });

  it('sizes a pod as its containers plus overhead; no limit stays no limit', () => {
    const pod = podResources(
      r({ cpuShares: 1024n, cpuQuota: 100_000n, memoryLimitInBytes: 1000n }),
      r({ cpuShares: 10n, cpuQuota: 5_000n, memoryLimitInBytes: 100n }),
    );
    expect(pod).toMatchObject({ cpuShares: 1034n, cpuQuota: 105_000n, memoryLimitInBytes: 1100n });
    expect(podResources(r({ cpuShares: 2n }), r({ memoryLimitInBytes: 100n }))).toMatchObject({ memoryLimitInBytes: 0n });
    expect(podResources(undefined, r({ cpuShares: 10n }))?.cpuShares).toBe(10n);
  });

  it.each(['abc', '0,,1', '1-0', '-1', '0-', ' 0', '0-99999999'])(
    'refuses the cpuset %j as InvalidArgument, before the kernel sees it',
    (cpus) => {
      expect(() => resourceWrites(r({ cpusetCpus: cpus }), 1)).toThrow(InvalidArgumentError);
      expect(() => resourceWrites(r({ cpusetMems: cpus }), 2)).toThrow(InvalidArgumentError);
    },
  );

  it('takes cpusets in the kernel list format', () => {
    expect(resourceWrites(r({ cpusetCpus: '0-1,3', cpusetMems: '0' }), 1)).toEqual([
      { file: 'cpuset.cpus', value: '0-1,3' },
      { file: 'cpuset.mems', value: '0' },
    ]);
  });

  it.each([1n, 4096n, MIN_MEMORY_LIMIT - 1n])(
    'refuses a memory limit of %d bytes, too small for a cgroup to exist (fuzz finding)',
    (limit) => {
      expect(() => resourceWrites(r({ memoryLimitInBytes: limit }), 1)).toThrow(InvalidArgumentError);
      expect(() => resourceWrites(r({ memoryLimitInBytes: limit }), 2)).toThrow(InvalidArgumentError);
    },
  );
});
