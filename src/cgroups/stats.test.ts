import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { CgroupTree } from './cgroup-files.js';
import { readOomKilled, readStats } from './stats.js';

/** Fake cgroup roots in a temp folder, laid out as the kernel mounts them (cgroupfs.test.ts does the same). */
const tempDir = useTempDirs('icetray-stats-');

/** Writes the files of cgroup `/c` in each hierarchy (v1) or in the root (v2). */
async function fakeCgroup(version: 1 | 2, files: Record<string, Record<string, string>>): Promise<CgroupTree> {
  const root = await tempDir();
  if (version === 2) await writeFile(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
  for (const [hierarchy, contents] of Object.entries(files)) {
    const base = version === 2 ? root : join(root, hierarchy);
    await mkdir(join(base, 'c'), { recursive: true });
    await writeFile(join(base, 'cgroup.procs'), '');
    for (const [file, text] of Object.entries(contents)) await writeFile(join(base, 'c', file), text);
  }
  return CgroupTree.open(root);
}

describe('readStats', () => {
  it('reads v1 CPU modes in nanoseconds, CFS throttling, cache, mapped files, OOM kills and the pids limit', async () => {
    const tree = await fakeCgroup(1, {
      cpuacct: { 'cpuacct.usage': '3000000000\n', 'cpuacct.usage_user': '2000000000\n', 'cpuacct.usage_sys': '1000000000\n' },
      cpu: { 'cpu.stat': 'nr_periods 10\nnr_throttled 4\nthrottled_time 2500000000\n' },
      memory: {
        'memory.usage_in_bytes': '9000\n',
        'memory.stat': 'cache 1\ntotal_cache 4000\ntotal_mapped_file 300\ntotal_inactive_file 1000\ntotal_rss 2000\n',
        'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
        'memory.failcnt': '5\n',
        'memory.max_usage_in_bytes': '12000\n',
        'memory.kmem.usage_in_bytes': '700\n',
        'memory.memsw.usage_in_bytes': '9500\n',
        'memory.limit_in_bytes': '67108864\n',
        'memory.memsw.limit_in_bytes': '9223372036854771712\n',
        'memory.soft_limit_in_bytes': '9223372036854771712\n',
      },
      pids: { 'pids.current': '3\n', 'pids.max': '128\n' },
      blkio: {
        'blkio.throttle.io_service_bytes_recursive': '8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\nTotal 12288\n',
        'blkio.throttle.io_serviced_recursive': '8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n',
      },
    });
    await writeFile(join(tree.root, 'cpu', 'c', 'cpu.cfs_period_us'), '100000\n');
    await writeFile(join(tree.root, 'cpu', 'c', 'cpu.cfs_quota_us'), '-1\n');
    await writeFile(join(tree.root, 'cpu', 'c', 'cpu.shares'), '1024\n');
    expect(await readStats(tree, '/c')).toMatchObject({
      cpuUsageNanos: 3_000_000_000n,
      cpuUserNanos: 2_000_000_000n,
      cpuSystemNanos: 1_000_000_000n,
      cpuPeriods: 10n,
      cpuThrottledPeriods: 4n,
      cpuThrottledNanos: 2_500_000_000n,
      memoryUsageBytes: 9000n,
      workingSetBytes: 8000n,
      rssBytes: 2000n,
      cacheBytes: 4000n,
      mappedFileBytes: 300n,
      oomKills: 2n,
      processes: 3,
      processesLimit: 128n,
      memoryFailcnt: 5n,
      memoryMaxUsageBytes: 12000n,
      kernelMemoryBytes: 700n,
      swapBytes: 500n,
      io: [{ major: 8, minor: 0, readBytes: 4096n, writeBytes: 8192n, reads: 1n, writes: 2n }],
      // Unlimited (-1, and v1's rounded PAGE_COUNTER_MAX) reads as 0, as cAdvisor reports it.
      limits: {
        cpuPeriod: 100000n,
        cpuQuota: 0n,
        cpuShares: 1024n,
        memoryBytes: 67108864n,
        memorySwapBytes: 0n,
        memoryReservationBytes: 0n,
      },
    });
    expect(await readOomKilled(tree, '/c')).toBe(true);
  });

  it('falls back to cpuacct.stat ticks (10 ms each) where usage_user/usage_sys are missing (Linux < 4.7)', async () => {
    const tree = await fakeCgroup(1, { cpuacct: { 'cpuacct.stat': 'user 150\nsystem 25\n' }, pids: { 'pids.max': 'max\n' } });
    expect(await readStats(tree, '/c')).toMatchObject({
      cpuUserNanos: 1_500_000_000n,
      cpuSystemNanos: 250_000_000n,
      processesLimit: 0n,
    });
  });

  it('reads v2 user/system/throttled microseconds as nanoseconds, file as cache, oom_kill from memory.events', async () => {
    const tree = await fakeCgroup(2, {
      '': {
        'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n',
        'memory.current': '8192\n',
        'memory.stat': 'anon 4096\nfile 2048\nfile_mapped 1024\ninactive_file 100\n',
        'memory.events': 'oom 1\noom_kill 1\n',
        'pids.current': '2\n',
        'pids.max': 'max\n',
        'io.stat': '8:16 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n',
        'cpu.max': '20000 100000\n',
        'cpu.weight': '39\n',
        'memory.max': 'max\n',
        'memory.swap.max': '0\n',
        'memory.peak': '9000\n',
        'memory.swap.current': '64\n',
      },
    });
    expect(await readStats(tree, '/c')).toMatchObject({
      cpuUsageNanos: 1_500_000n,
      cpuUserNanos: 1_000_000n,
      cpuSystemNanos: 500_000n,
      cpuPeriods: 7n,
      cpuThrottledPeriods: 2n,
      cpuThrottledNanos: 30_000n,
      workingSetBytes: 8092n,
      rssBytes: 4096n,
      cacheBytes: 2048n,
      mappedFileBytes: 1024n,
      oomKills: 1n,
      processes: 2,
      processesLimit: 0n,
      memoryMaxUsageBytes: 9000n,
      swapBytes: 64n,
      io: [{ major: 8, minor: 16, readBytes: 100n, writeBytes: 200n, reads: 3n, writes: 4n }],
      // cpu.weight 39 is what sharesToWeight makes of 1024 shares; the linear map back gives 998 (it is lossy).
      limits: {
        cpuPeriod: 100000n,
        cpuQuota: 20000n,
        cpuShares: 998n,
        memoryBytes: 0n,
        memorySwapBytes: 0n,
        memoryReservationBytes: 0n,
      },
    });
  });
});
