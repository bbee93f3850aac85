import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CgroupTree } from '../src/cgroups/cgroup-files.js';
import { DEFAULT_DEVICE_ACCESS, devicePolicy, parseDevicesList, samePolicy } from '../src/cgroups/devices.js';
import { createDriver, type CgroupDriver } from '../src/cgroups/driver.js';
import { InvalidArgumentError } from '../src/errors.js';
import { LinuxContainerResources } from '../src/generated/api.js';
import { bootSystemd, systemdUnavailable, type BootedSystemd, type InsideProcess } from './helpers/systemd.js';

/**
 * The systemd driver against a real systemd (booted as PID 1 of new namespaces by the helper),
 * over D-Bus as icetray talks to the host's: pod slices and container scopes, their limits in the
 * cgroup files, and nothing left behind.
 */
const why = systemdUnavailable();
const podUid = '6f1a-44c2-9b1e';
const podSlice = '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1a_44c2_9b1e.slice';

describe.skipIf(why !== undefined)(
  `systemd driver against a real systemd${why === undefined ? '' : ` (skipped: ${why})`}`,
  () => {
    let systemd: BootedSystemd;
    let driver: CgroupDriver;
    let tree: CgroupTree;
    const processes: InsideProcess[] = [];

    /** What beforeAll made, undone in reverse by afterAll even when a later step failed. */
    const cleanups: (() => Promise<void>)[] = [];

    beforeAll(async () => {
      systemd = await bootSystemd();
      cleanups.push(() => systemd.stop());
      driver = await createDriver({ name: 'systemd', systemdRoot: systemd.root, systemdPid: systemd.pid });
      cleanups.push(() => driver.close());
      tree = await CgroupTree.open(join(systemd.root, 'sys/fs/cgroup'));
    }, 40_000);

    afterAll(async () => {
      await Promise.all(processes.map((p) => p.kill()));
      for (const undo of cleanups.reverse()) await undo();
    }, 30_000);

    /** A resource file of a cgroup, as systemd's tree holds it. */
    const file = (cgroup: string, name: string) => {
      const controller = name.slice(0, name.indexOf('.'));
      const dir = tree.version === 2 ? '' : (tree.hierarchies.find((h) => h.controllers.includes(controller))?.name ?? '?');
      return readFileSync(join(systemd.root, 'sys/fs/cgroup', dir, cgroup, name), 'utf8').trim();
    };

    /** The cgroup of a process in a hierarchy, as systemd sees it (the host's path less systemd's own cgroup). */
    const cgroupOf = (pid: number, controller: string) => {
      const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => l.split(':')[1]?.split(',').includes(controller));
      return line?.split(':')[2]?.slice(systemd.cgroup.length);
    };

    it('makes the pod slice and a container scope with Delegate, and places a process before it runs', async () => {
      expect(driver.version).toBe(systemd.version);
      expect(await driver.createPod({ podUid, sandboxId: 's1', cgroupParent: '' })).toBe(podSlice);
      expect(await systemd.systemctl('is-active', 'kubepods-burstable-pod6f1a_44c2_9b1e.slice')).toBe('active');

      const resources = LinuxContainerResources.fromPartial({
        memoryLimitInBytes: 64n * 1024n * 1024n,
        cpuQuota: 50_000n,
        cpuPeriod: 100_000n,
        cpuShares: 512n,
      });
      const cgroup = await driver.createContainer(podSlice, 'c1', resources);
      expect(cgroup).toBe(`${podSlice}/icetray-c1.scope`);
      const sleeper = await systemd.spawnInside(['sleep', '600']);
      processes.push(sleeper);
      await driver.addProcess(cgroup, sleeper.pid);
      sleeper.go();

      expect(await systemd.systemctl('is-active', 'icetray-c1.scope')).toBe('active');
      expect(await systemd.systemctl('show', '-p', 'Delegate', '--value', 'icetray-c1.scope')).toBe('yes');
      expect(await driver.pids(cgroup)).toEqual([sleeper.pid]);
      if (tree.version === 1) {
        // The controllers systemd manages, and cpuset which the driver fills itself.
        for (const controller of ['memory', 'cpu', 'pids', 'cpuset']) expect(cgroupOf(sleeper.pid, controller)).toBe(cgroup);
        expect(file(cgroup, 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
        expect(file(cgroup, 'cpu.cfs_quota_us')).toBe('50000');
        expect(file(cgroup, 'cpu.shares')).toBe('512');
      } else {
        expect(cgroupOf(sleeper.pid, '')).toBe(cgroup);
        expect(await systemd.systemctl('show', '-p', 'MemoryMax', '--value', 'icetray-c1.scope')).toBe(String(64 * 1024 * 1024));
        if (existsSync(join(systemd.root, 'sys/fs/cgroup', cgroup, 'memory.max')))
          expect(file(cgroup, 'memory.max')).toBe(String(64 * 1024 * 1024));
      }
    });

    it('updates a running container through SetUnitProperties: the new limits are in the files', async () => {
      const cgroup = `${podSlice}/icetray-c1.scope`;
      await driver.update(
        cgroup,
        LinuxContainerResources.fromPartial({ memoryLimitInBytes: 128n * 1024n * 1024n, cpuQuota: 20_000n }),
      );
      expect(await systemd.systemctl('show', '-p', 'MemoryMax', '--value', 'icetray-c1.scope')).toBe(String(128 * 1024 * 1024));
      expect(await systemd.systemctl('show', '-p', 'CPUQuotaPerSecUSec', '--value', 'icetray-c1.scope')).toBe('200ms');
      if (tree.version === 1) {
        expect(file(cgroup, 'memory.limit_in_bytes')).toBe(String(128 * 1024 * 1024));
        expect(file(cgroup, 'cpu.cfs_quota_us')).toBe('20000');
      }
    });

    it('adds a second process (an exec) to the running scope, and reads stats', async () => {
      const cgroup = `${podSlice}/icetray-c1.scope`;
      const exec = await systemd.spawnInside(['sleep', '600']);
      processes.push(exec);
      await driver.addProcess(cgroup, exec.pid);
      exec.go();
      expect((await driver.pids(cgroup)).sort()).toEqual(processes.map((p) => p.pid).sort());
      const stats = await driver.stats(cgroup);
      expect(stats.processes).toBe(2);
      if (tree.version === 1) expect(stats.memoryUsageBytes).toBeGreaterThan(0n);
    });

    it('takes a slice cgroup_parent as given (critest\'s "/test.slice") and refuses a cgroupfs path', async () => {
      expect(await driver.createPod({ podUid: 'u2', sandboxId: 's2', cgroupParent: '/test.slice' })).toBe('/test.slice');
      await expect(
        driver.createPod({ podUid: 'u3', sandboxId: 's3', cgroupParent: '/kubepods/burstable/podu3' }),
      ).rejects.toThrow(InvalidArgumentError);
      const cgroup = await driver.createContainer('/test.slice', 'c2');
      const p = await systemd.spawnInside(['sleep', '600']);
      processes.push(p);
      await driver.addProcess(cgroup, p.pid);
      expect(cgroupOf(p.pid, tree.version === 1 ? 'memory' : '')).toBe('/test.slice/icetray-c2.scope');
      await p.kill();
      await driver.remove(cgroup);
      await driver.remove('/test.slice');
      expect(await systemd.systemctl('is-active', 'icetray-c2.scope')).not.toBe('active');
    });

    /**
     * Runs device checks in a new scope's first process and returns "ok" or the error of each. The
     * process shares the host's mount namespace (only its PID namespace is systemd's), so it
     * writes its answers to a host folder; then it sleeps, so that the scope (which ends with its
     * last process) can still be inspected.
     */
    const deviceProbe = async (cgroup: string, placer: CgroupDriver = driver): Promise<Record<string, string>> => {
      const dir = await mkdtemp(join(tmpdir(), 'icetray-systemd-devices-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const checks: [string, string][] = [
        ['read /dev/null', 'cat /dev/null'],
        ['read /dev/urandom', 'dd if=/dev/urandom of=/dev/null bs=8 count=1'],
        ['open /dev/ptmx', 'exec 3<>/dev/ptmx'],
        ['open /dev/kmsg', 'exec 3</dev/kmsg'],
        ['mknod loop0', `mknod ${dir}/loop0 b 7 0`],
        ['read the mknod loop0', `dd if=${dir}/loop0 of=/dev/null bs=512 count=1`],
      ];
      const script = checks
        .map(([name, cmd]) => `if out=$( (${cmd}) 2>&1); then echo "${name}=ok"; else echo "${name}=$(echo $out)"; fi`)
        .join('\n');
      const p = await systemd.spawnInside([
        'sh',
        '-c',
        `{ ${script}\n} > ${dir}/results.tmp; mv ${dir}/results.tmp ${dir}/results; exec sleep 600`,
      ]);
      processes.push(p);
      await placer.addProcess(cgroup, p.pid);
      p.go();
      for (let i = 0; i < 100 && !existsSync(join(dir, 'results')); i++) await new Promise((r) => setTimeout(r, 50));
      const text = await readFile(join(dir, 'results'), 'utf8');
      return Object.fromEntries(
        text
          .trim()
          .split('\n')
          .map((line) => line.split('=', 2) as [string, string]),
      );
    };

    it('gives a scope the default device allowlist as DevicePolicy=strict: systemd alone refuses a device outside it', async (ctx) => {
      ctx.skip(!existsSync('/dev/loop0'), 'needs /dev/loop0 (block 7:0) to attack');
      // A driver that attaches no program of its own: what is denied here, systemd's DevicePolicy denied.
      const skipped: string[] = [];
      const systemdOnly = await createDriver({
        name: 'systemd',
        systemdRoot: systemd.root,
        systemdPid: systemd.pid,
        deviceFilter: (dir) => {
          skipped.push(dir);
          return Promise.resolve();
        },
      });
      cleanups.push(() => systemdOnly.close());
      const cgroup = await systemdOnly.createContainer(podSlice, 'dev1');
      const results = await deviceProbe(cgroup, systemdOnly);
      // Where systemd mounted a v2 hierarchy beside v1 (hybrid), icetray's driver would have added its program.
      expect(skipped).toEqual(tree.hierarchies.some((h) => h.v2) ? [tree.v2Dir(cgroup)] : []);
      expect(await systemd.systemctl('show', '-p', 'DevicePolicy', '--value', 'icetray-dev1.scope')).toBe('strict');
      expect(await systemd.systemctl('show', '-p', 'DeviceAllow', '--value', 'icetray-dev1.scope')).toContain('char-136 rwm');
      if (tree.version === 1) {
        const list = file(cgroup, 'devices.list');
        expect(samePolicy(parseDevicesList(list), devicePolicy(DEFAULT_DEVICE_ACCESS))).toBe(true);
      }
      for (const name of ['read /dev/null', 'read /dev/urandom', 'open /dev/ptmx', 'mknod loop0'])
        expect(results[name], name).toBe('ok');
      for (const name of ['open /dev/kmsg', 'read the mknod loop0'])
        expect(results[name], name).toMatch(/Operation not permitted/);
    });

    it('leaves a privileged scope unrestricted (DevicePolicy=auto, no DeviceAllow)', async (ctx) => {
      ctx.skip(!existsSync('/dev/loop0'), 'needs /dev/loop0 (block 7:0)');
      const cgroup = await driver.createContainer(podSlice, 'dev2', undefined, { privileged: true, nodes: [] });
      const results = await deviceProbe(cgroup);
      expect(await systemd.systemctl('show', '-p', 'DevicePolicy', '--value', 'icetray-dev2.scope')).toBe('auto');
      expect(Object.values(results)).toEqual(Array<string>(6).fill('ok'));
      await Promise.all(processes.map((p) => p.kill()));
      for (const unit of ['dev1', 'dev2']) await driver.remove(`${podSlice}/icetray-${unit}.scope`);
    });

    it('removes the container scope and the pod slice: no unit and no cgroup is left in any hierarchy', async () => {
      const cgroup = `${podSlice}/icetray-c1.scope`;
      await Promise.all(processes.map((p) => p.kill()));
      await driver.remove(cgroup);
      await driver.remove(podSlice);
      expect(await systemd.systemctl('is-active', 'icetray-c1.scope')).not.toBe('active');
      expect(await systemd.systemctl('is-active', 'kubepods-burstable-pod6f1a_44c2_9b1e.slice')).not.toBe('active');
      for (const dir of [
        ...tree.dirs(cgroup),
        ...tree.dirs(podSlice),
        ...tree.dirs('/test.slice/icetray-c2.scope'),
        ...tree.dirs(`${podSlice}/icetray-dev1.scope`),
      ])
        expect(existsSync(dir)).toBe(false);
    });
  },
);
