import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { LinuxContainerResources } from '../generated/api.js';
import { CgroupTree } from './cgroup-files.js';
import { createDriver } from './driver.js';

/** Fake cgroup roots in a temp folder, laid out as the kernel mounts them (opencontainers/cgroups' fs tests do the same). */
const tempDir = useTempDirs('icetray-cgroup-');

async function fakeRoot(version: 1 | 2): Promise<string> {
  const root = await tempDir();
  if (version === 2) {
    await writeFile(join(root, 'cgroup.controllers'), 'cpuset cpu memory pids\n');
    await writeFile(join(root, 'cgroup.subtree_control'), 'cpu\n');
    await writeFile(join(root, 'cgroup.procs'), '');
    return root;
  }
  for (const h of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'systemd', 'unified']) {
    await mkdir(join(root, h));
    await writeFile(join(root, h, 'cgroup.procs'), '');
  }
  await writeFile(join(root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
  await writeFile(join(root, 'cpuset', 'cpuset.cpus'), '0-3\n');
  await writeFile(join(root, 'cpuset', 'cpuset.mems'), '0\n');
  await writeFile(join(root, 'not-a-cgroup'), '');
  return root;
}

const read = (...path: string[]) => readFile(join(...path), 'utf8');
const resources = LinuxContainerResources.fromPartial({ memoryLimitInBytes: 1000n, cpuQuota: 50_000n, cpuShares: 1024n });

describe('cgroup tree detection', () => {
  it('finds v1 hierarchies, with the named systemd and hybrid unified ones as placement-only', async () => {
    const tree = await CgroupTree.open(await fakeRoot(1));
    expect(tree.version).toBe(1);
    expect(tree.hierarchies.map((h) => [h.name, h.controllers])).toEqual([
      ['cpu', ['cpu']],
      ['cpuacct', ['cpuacct']],
      ['cpuset', ['cpuset']],
      ['memory', ['memory']],
      ['pids', ['pids']],
      ['systemd', []],
      ['unified', []],
    ]);
  });

  it('finds v2 by cgroup.controllers at the root', async () => {
    const tree = await CgroupTree.open(await fakeRoot(2));
    expect(tree.version).toBe(2);
    expect(tree.hasController('memory')).toBe(true);
  });

  it('fails with the reason when nothing is mounted', async () => {
    await expect(createDriver({ name: 'cgroupfs', root: await tempDir() })).rejects.toThrow(/no cgroup hierarchy is mounted/);
  });
});

describe('cgroupfs driver on a fake v1 tree', () => {
  it('creates pod and container cgroups in every hierarchy, with v1 limit files and an inherited cpuset', async () => {
    const root = await fakeRoot(1);
    const driver = await createDriver({ name: 'cgroupfs', root });
    const pod = await driver.createPod({ podUid: 'u1', sandboxId: 's1', cgroupParent: '', resources });
    expect(pod).toBe('/kubepods/burstable/podu1');
    expect(await read(root, 'memory', pod, 'memory.limit_in_bytes')).toBe('1000');
    const cgroup = await driver.createContainer(pod, 'c1', resources);
    expect(cgroup).toBe('/kubepods/burstable/podu1/c1');
    for (const h of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'systemd', 'unified'])
      expect(existsSync(join(root, h, cgroup))).toBe(true);
    expect(await read(root, 'cpu', cgroup, 'cpu.cfs_quota_us')).toBe('50000');
    expect(await read(root, 'cpu', cgroup, 'cpu.shares')).toBe('1024');
    expect(await read(root, 'cpuset', cgroup, 'cpuset.cpus')).toBe('0-3');
    expect(existsSync(join(root, 'memory', cgroup, 'memory.memsw.limit_in_bytes'))).toBe(false);

    await driver.addProcess(cgroup, 4242);
    expect(await read(root, 'pids', cgroup, 'cgroup.procs')).toBe('4242');
    expect(await driver.pids(cgroup)).toEqual([4242]);
  });

  it('reads v1 stats as cAdvisor does: working set is usage less inactive file', async () => {
    const root = await fakeRoot(1);
    const driver = await createDriver({ name: 'cgroupfs', root });
    const cgroup = await driver.createContainer('/p', 'c');
    await writeFile(join(root, 'cpuacct', cgroup, 'cpuacct.usage'), '123456789\n');
    await writeFile(join(root, 'memory', cgroup, 'memory.usage_in_bytes'), '10000\n');
    await writeFile(
      join(root, 'memory', cgroup, 'memory.stat'),
      'cache 1\nrss 2\ntotal_inactive_file 3000\ntotal_rss 5000\ntotal_pgfault 7\ntotal_pgmajfault 1\n',
    );
    await writeFile(join(root, 'pids', cgroup, 'pids.current'), '3\n');
    await writeFile(join(root, 'memory', cgroup, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n');
    const stats = await driver.stats(cgroup);
    expect(stats).toMatchObject({
      cpuUsageNanos: 123456789n,
      memoryUsageBytes: 10000n,
      workingSetBytes: 7000n,
      rssBytes: 5000n,
      pageFaults: 7n,
      majorPageFaults: 1n,
      processes: 3,
    });
    expect(await driver.oomKilled(cgroup)).toBe(true);
  });

  it('keeps a pod cgroup with containers in it and removes it once they are gone', async () => {
    const root = await fakeRoot(1);
    const driver = await createDriver({ name: 'cgroupfs', root });
    const pod = await driver.createPod({ podUid: 'u1', sandboxId: 's1', cgroupParent: '/test/podu1' });
    const cgroup = await driver.createContainer(pod, 'c1', resources);
    await driver.remove(pod);
    expect(existsSync(join(root, 'memory', pod))).toBe(true);
    await driver.remove(cgroup);
    await driver.remove(pod);
    for (const h of ['cpu', 'memory', 'systemd', 'unified']) expect(existsSync(join(root, h, pod))).toBe(false);
    await driver.remove(pod);
  });

  it('refuses the unified map on v1 and removes the half-made container cgroup', async () => {
    const root = await fakeRoot(1);
    const driver = await createDriver({ name: 'cgroupfs', root });
    await expect(
      driver.createContainer('/p', 'c', LinuxContainerResources.fromPartial({ unified: { 'memory.high': '1' } })),
    ).rejects.toThrow(/need cgroup v2/);
    expect(existsSync(join(root, 'memory', 'p', 'c'))).toBe(false);
  });
});

describe('cgroupfs driver on a fake v2 tree', () => {
  it('enables controllers down the path and writes v2 files; UpdateContainerResources rewrites them', async () => {
    const root = await fakeRoot(2);
    const driver = await createDriver({ name: 'cgroupfs', root });
    expect(driver.version).toBe(2);
    const pod = await driver.createPod({ podUid: 'u1', sandboxId: 's1', cgroupParent: '' });
    expect(await read(root, 'cgroup.subtree_control')).toBe('+cpuset +memory +pids');
    const cgroup = await driver.createContainer(pod, 'c1', resources);
    expect(await read(root, cgroup, 'memory.max')).toBe('1000');
    expect(await read(root, cgroup, 'cpu.max')).toBe('50000 100000');
    expect(await read(root, cgroup, 'cpu.weight')).toBe('39');
    await driver.update(
      cgroup,
      LinuxContainerResources.fromPartial({ memoryLimitInBytes: 2000n, unified: { 'memory.high': '1500' } }),
    );
    expect(await read(root, cgroup, 'memory.max')).toBe('2000');
    expect(await read(root, cgroup, 'memory.high')).toBe('1500');
    expect(await read(root, cgroup, 'cpu.max')).toBe('50000 100000');
  });

  it('reads v2 stats: usage_usec in nanoseconds, anon as RSS, oom_kill from memory.events', async () => {
    const root = await fakeRoot(2);
    const driver = await createDriver({ name: 'cgroupfs', root });
    const cgroup = await driver.createContainer('/p', 'c');
    await writeFile(join(root, cgroup, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
    await writeFile(join(root, cgroup, 'memory.current'), '8192\n');
    await writeFile(join(root, cgroup, 'memory.stat'), 'anon 4096\ninactive_file 10000\npgfault 9\npgmajfault 2\n');
    await writeFile(join(root, cgroup, 'cgroup.procs'), '10\n11\n');
    await writeFile(join(root, cgroup, 'memory.events'), 'oom 0\noom_kill 0\n');
    expect(await driver.stats(cgroup)).toMatchObject({
      cpuUsageNanos: 1_500_000n,
      memoryUsageBytes: 8192n,
      workingSetBytes: 0n,
      rssBytes: 4096n,
      pageFaults: 9n,
      majorPageFaults: 2n,
      processes: 2,
    });
    expect(await driver.oomKilled(cgroup)).toBe(false);
  });
});
