import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { InvalidArgumentError, UnavailableError } from '../errors.js';
import { LinuxContainerResources } from '../generated/api.js';
import { CgroupTree } from './cgroup-files.js';
import { deviceProgram } from './device-program.js';
import { DEFAULT_DEVICE_ACCESS, devicePolicy } from './devices.js';
import { createDriver, type DeviceFilterAttacher } from './driver.js';

/** Fake cgroup roots in a temp folder, laid out as the kernel mounts them (opencontainers/cgroups' fs tests do the same). */
const tempDir = useTempDirs('icetray-cgroup-');

/** Records the device programs a driver attaches (the real attacher needs a real cgroup v2 folder). */
function filterRecorder(fail = false): DeviceFilterAttacher & { attached: { dir: string; program: Buffer }[] } {
  const attached: { dir: string; program: Buffer }[] = [];
  const attach = (dir: string, program: Uint8Array) => {
    if (fail) return Promise.reject(new UnavailableError('failed to attach the device filter'));
    attached.push({ dir, program: Buffer.from(program) });
    return Promise.resolve();
  };
  return Object.assign(attach, { attached });
}

/** A cgroupfs driver on a fake root, with device programs recorded. */
async function fakeDriver(root: string, deviceFilter: DeviceFilterAttacher = filterRecorder()) {
  return createDriver({ name: 'cgroupfs', root, deviceFilter });
}

const defaultProgram = () => {
  const policy = devicePolicy(DEFAULT_DEVICE_ACCESS);
  return deviceProgram(policy.kind === 'allowlist' ? policy.rules : []);
};

async function fakeRoot(
  version: 1 | 2,
  hierarchies = ['cpu', 'cpuacct', 'cpuset', 'devices', 'memory', 'pids', 'systemd', 'unified'],
): Promise<string> {
  const root = await tempDir();
  if (version === 2) {
    await writeFile(join(root, 'cgroup.controllers'), 'cpuset cpu memory pids\n');
    await writeFile(join(root, 'cgroup.subtree_control'), 'cpu\n');
    await writeFile(join(root, 'cgroup.procs'), '');
    return root;
  }
  for (const h of hierarchies) {
    await mkdir(join(root, h));
    await writeFile(join(root, h, 'cgroup.procs'), '');
  }
  if (hierarchies.includes('unified')) await writeFile(join(root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
  if (hierarchies.includes('cpuset')) {
    await writeFile(join(root, 'cpuset', 'cpuset.cpus'), '0-3\n');
    await writeFile(join(root, 'cpuset', 'cpuset.mems'), '0\n');
  }
  await writeFile(join(root, 'not-a-cgroup'), '');
  return root;
}

const read = (...path: string[]) => readFile(join(...path), 'utf8');
const resources = LinuxContainerResources.fromPartial({ memoryLimitInBytes: 1n << 26n, cpuQuota: 50_000n, cpuShares: 1024n });

describe('cgroup tree detection', () => {
  it('finds v1 hierarchies, with the named systemd and hybrid unified ones as placement-only', async () => {
    const tree = await CgroupTree.open(await fakeRoot(1));
    expect(tree.version).toBe(1);
    expect(tree.hierarchies.map((h) => [h.name, h.controllers])).toEqual([
      ['cpu', ['cpu']],
      ['cpuacct', ['cpuacct']],
      ['cpuset', ['cpuset']],
      ['devices', ['devices']],
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
    expect(tree.v2Dir('/a/b')).toBe(join(tree.root, 'a/b'));
  });

  it('fails with the reason when nothing is mounted', async () => {
    await expect(createDriver({ name: 'cgroupfs', root: await tempDir() })).rejects.toThrow(/no cgroup hierarchy is mounted/);
  });
});

describe('cgroupfs driver on a fake v1 tree', () => {
  it('creates pod and container cgroups in every hierarchy, with v1 limit files and an inherited cpuset', async () => {
    const root = await fakeRoot(1);
    const driver = await fakeDriver(root);
    const pod = await driver.createPod({ podUid: 'u1', sandboxId: 's1', cgroupParent: '', resources });
    expect(pod).toBe('/kubepods/burstable/podu1');
    expect(await read(root, 'memory', pod, 'memory.limit_in_bytes')).toBe('67108864');
    const cgroup = await driver.createContainer(pod, 'c1', resources);
    expect(cgroup).toBe('/kubepods/burstable/podu1/c1');
    for (const h of ['cpu', 'cpuacct', 'cpuset', 'devices', 'memory', 'pids', 'systemd', 'unified'])
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
    const driver = await fakeDriver(root);
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
    const driver = await fakeDriver(root);
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
    const driver = await fakeDriver(root);
    await expect(
      driver.createContainer('/p', 'c', LinuxContainerResources.fromPartial({ unified: { 'memory.high': '1' } })),
    ).rejects.toThrow(/need cgroup v2/);
    expect(existsSync(join(root, 'memory', 'p', 'c'))).toBe(false);
  });
});

describe('cgroupfs driver device allowlist on fake trees', () => {
  it('on a hybrid v1 tree, denies all then allows the defaults in devices, and attaches the program in unified', async () => {
    const root = await fakeRoot(1);
    const filter = filterRecorder();
    const driver = await fakeDriver(root, filter);
    // Left out: the default set, as for pause.
    const cgroup = await driver.createContainer('/p', 'pause');
    expect(await read(root, 'devices', cgroup, 'devices.deny')).toBe('a');
    // A plain file keeps only the last write; the order of all of them is v1DeviceWrites' (devices.test.ts).
    expect(await read(root, 'devices', cgroup, 'devices.allow')).toBe('c 136:* rwm');
    expect(filter.attached).toEqual([{ dir: join(root, 'unified', cgroup), program: defaultProgram() }]);
  });

  it('adds the requested nodes, and lets a privileged container use everything with no program', async () => {
    const root = await fakeRoot(1);
    const filter = filterRecorder();
    const driver = await fakeDriver(root, filter);
    const withLoop = await driver.createContainer('/p', 'c1', undefined, {
      privileged: false,
      nodes: [{ type: 'b', major: 7, minor: 0, access: 'r' }],
    });
    expect(await read(root, 'devices', withLoop, 'devices.allow')).toBe('b 7:0 r');
    const privileged = await driver.createContainer('/p', 'c2', undefined, { privileged: true, nodes: [] });
    expect(await read(root, 'devices', privileged, 'devices.allow')).toBe('a');
    expect(existsSync(join(root, 'devices', privileged, 'devices.deny'))).toBe(false);
    expect(filter.attached.map((a) => a.dir)).toEqual([join(root, 'unified', withLoop)]);
  });

  it('refuses a malformed device node before making anything', async () => {
    const root = await fakeRoot(1);
    const driver = await fakeDriver(root);
    await expect(
      driver.createContainer('/p', 'c', undefined, {
        privileged: false,
        nodes: [{ type: 'c', major: 1, minor: 3, access: 'x' }],
      }),
    ).rejects.toThrow(InvalidArgumentError);
    expect(existsSync(join(root, 'devices', 'p', 'c'))).toBe(false);
  });

  it('removes the half-made cgroup in every hierarchy when the device program cannot be attached', async () => {
    const root = await fakeRoot(1);
    const driver = await fakeDriver(root, filterRecorder(true));
    await expect(driver.createContainer('/p', 'c')).rejects.toThrow(UnavailableError);
    for (const h of ['cpu', 'devices', 'memory', 'unified']) expect(existsSync(join(root, h, 'p', 'c'))).toBe(false);
  });

  it('fails loudly where nothing can enforce an allowlist (no devices controller, no v2), and removes the cgroup', async () => {
    const root = await fakeRoot(1, ['cpu', 'memory']);
    const driver = await fakeDriver(root);
    await expect(driver.createContainer('/p', 'c')).rejects.toThrow(
      /neither the v1 devices controller nor a cgroup v2 hierarchy/,
    );
    expect(existsSync(join(root, 'memory', 'p', 'c'))).toBe(false);
    // Allow-all needs no mechanism.
    expect(await driver.createContainer('/p', 'c', undefined, { privileged: true, nodes: [] })).toBe('/p/c');
  });

  it('on a v2 tree, attaches the program to the cgroup folder and writes no devices files', async () => {
    const root = await fakeRoot(2);
    const filter = filterRecorder();
    const driver = await fakeDriver(root, filter);
    const cgroup = await driver.createContainer('/p', 'c');
    expect(filter.attached).toEqual([{ dir: join(root, cgroup), program: defaultProgram() }]);
    expect(existsSync(join(root, cgroup, 'devices.deny'))).toBe(false);
  });
});

describe('cgroupfs driver on a fake v2 tree', () => {
  it('enables controllers down the path and writes v2 files; UpdateContainerResources rewrites them', async () => {
    const root = await fakeRoot(2);
    const driver = await fakeDriver(root);
    expect(driver.version).toBe(2);
    const pod = await driver.createPod({ podUid: 'u1', sandboxId: 's1', cgroupParent: '' });
    expect(await read(root, 'cgroup.subtree_control')).toBe('+cpuset +memory +pids');
    const cgroup = await driver.createContainer(pod, 'c1', resources);
    expect(await read(root, cgroup, 'memory.max')).toBe('67108864');
    expect(await read(root, cgroup, 'cpu.max')).toBe('50000 100000');
    expect(await read(root, cgroup, 'cpu.weight')).toBe('39');
    await driver.update(
      cgroup,
      LinuxContainerResources.fromPartial({ memoryLimitInBytes: 1n << 27n, unified: { 'memory.high': '1500' } }),
    );
    expect(await read(root, cgroup, 'memory.max')).toBe('134217728');
    expect(await read(root, cgroup, 'memory.high')).toBe('1500');
    expect(await read(root, cgroup, 'cpu.max')).toBe('50000 100000');
  });

  it('reads v2 stats: usage_usec in nanoseconds, anon as RSS, oom_kill from memory.events', async () => {
    const root = await fakeRoot(2);
    const driver = await fakeDriver(root);
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
