import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CgroupTree } from '../src/cgroups/cgroup-files.js';
import { createDriver, type CgroupDriver } from '../src/cgroups/driver.js';
import { LinuxContainerResources } from '../src/generated/api.js';
import { isRoot } from './helpers/tools.js';

/**
 * The cgroupfs driver on the real kernel: /sys/fs/cgroup, v1 on this project's machines (v2 where
 * the host runs it). Everything lives under a test-unique top-level cgroup, removed at the end.
 */
const ROOT = '/sys/fs/cgroup';
const top = `/icetray-test-${process.pid}-${Date.now().toString(36)}`;
const podUid = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const podCgroup = `${top}/pod${podUid}`;
const why = !isRoot ? 'needs root: writes /sys/fs/cgroup' : !existsSync(ROOT) ? 'no cgroup mount at /sys/fs/cgroup' : undefined;

const children: ChildProcess[] = [];
/** A shell that waits on stdin before running `script`, as the launcher holds a process until it is placed. */
function start(script: string): ChildProcess {
  const child = spawn('sh', ['-c', `read go; ${script}`], { stdio: ['pipe', 'ignore', 'ignore'] });
  children.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** The cgroup a process is in, per hierarchy ("memory" → path; v2's is under ""), from /proc/<pid>/cgroup. */
function cgroupsOf(pid: number): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, controllers = '', path = ''] = line.split(':');
    for (const c of controllers.split(',')) map.set(c, path);
  }
  return map;
}

/** Every folder under the test's top cgroup, in any hierarchy. */
async function leftovers(tree: CgroupTree): Promise<string[]> {
  const found: string[] = [];
  const walk = async (cgroup: string) => {
    for (const child of await tree.children(cgroup)) {
      found.push(`${cgroup}/${child}`);
      await walk(`${cgroup}/${child}`);
    }
  };
  await walk(top);
  return found;
}

describe.skipIf(why !== undefined)(`cgroupfs driver on the real kernel${why === undefined ? '' : ` (skipped: ${why})`}`, () => {
  let driver: CgroupDriver;
  let tree: CgroupTree;

  afterAll(async () => {
    await Promise.all(children.map(stop));
    const tree = await CgroupTree.open(ROOT);
    // Leaves first: whatever a failed test left below the top cgroup, then the top itself.
    for (const path of (await leftovers(tree)).reverse()) await tree.remove(path).catch(() => undefined);
    await tree.remove(top);
  });

  const file = (cgroup: string, name: string) => {
    const controller = name.slice(0, name.indexOf('.'));
    const dir =
      driver.version === 2 ? ROOT : join(ROOT, tree.hierarchies.find((h) => h.controllers.includes(controller))?.name ?? '?');
    return readFile(join(dir, cgroup, name), 'utf8').then((text) => text.trim());
  };

  it('creates the pod and container cgroups, places a process, and sets its memory limit and CPU quota', async () => {
    driver = await createDriver({ name: 'cgroupfs', root: ROOT });
    tree = await CgroupTree.open(ROOT);
    expect(await driver.createPod({ podUid, sandboxId: 's1', cgroupParent: podCgroup })).toBe(podCgroup);
    const resources = LinuxContainerResources.fromPartial({
      memoryLimitInBytes: 64n * 1024n * 1024n,
      cpuQuota: 50_000n,
      cpuPeriod: 100_000n,
      cpuShares: 512n,
    });
    const cgroup = await driver.createContainer(podCgroup, 'c1', resources);
    expect(cgroup).toBe(`${podCgroup}/c1`);

    const sleeper = start('exec sleep 600');
    await driver.addProcess(cgroup, sleeper.pid ?? 0);
    const placed = cgroupsOf(sleeper.pid ?? 0);
    if (driver.version === 1) {
      for (const controller of ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset']) expect(placed.get(controller)).toBe(cgroup);
      expect(await file(cgroup, 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
      expect(await file(cgroup, 'cpu.cfs_quota_us')).toBe('50000');
      expect(await file(cgroup, 'cpu.cfs_period_us')).toBe('100000');
      expect(await file(cgroup, 'cpu.shares')).toBe('512');
    } else {
      expect(placed.get('')).toBe(cgroup);
      expect(await file(cgroup, 'memory.max')).toBe(String(64 * 1024 * 1024));
      expect(await file(cgroup, 'cpu.max')).toBe('50000 100000');
    }
    expect(await driver.pids(cgroup)).toEqual([sleeper.pid]);
  });

  it('updates a running container: the new limits are in the files', async () => {
    const cgroup = `${podCgroup}/c1`;
    await driver.update(
      cgroup,
      LinuxContainerResources.fromPartial({ memoryLimitInBytes: 128n * 1024n * 1024n, cpuQuota: 20_000n }),
    );
    if (driver.version === 1) {
      expect(await file(cgroup, 'memory.limit_in_bytes')).toBe(String(128 * 1024 * 1024));
      expect(await file(cgroup, 'cpu.cfs_quota_us')).toBe('20000');
    } else {
      expect(await file(cgroup, 'memory.max')).toBe(String(128 * 1024 * 1024));
      expect(await file(cgroup, 'cpu.max')).toBe('20000 100000');
    }
  });

  it('reads stats: CPU use rises for a busy process, memory and process count are there', async () => {
    const cgroup = await driver.createContainer(podCgroup, 'busy');
    // exec after placement: the new program's memory is charged to the new cgroup.
    const busy = start('exec sh -c "while :; do :; done"');
    await driver.addProcess(cgroup, busy.pid ?? 0);
    busy.stdin?.write('\n');
    const before = await driver.stats(cgroup);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = await driver.stats(cgroup);
    expect(after.cpuUsageNanos - before.cpuUsageNanos).toBeGreaterThan(50_000_000n);
    expect(after.timestamp).toBeGreaterThan(before.timestamp);
    expect(after.processes).toBe(1);
    expect(after.memoryUsageBytes).toBeGreaterThan(0n);
    expect(after.workingSetBytes).toBeLessThanOrEqual(after.memoryUsageBytes);
    expect(await driver.oomKilled(cgroup)).toBe(false);
    // A cgroup with a live process cannot go.
    await expect(driver.remove(cgroup)).rejects.toThrow(/still has processes/);
    await stop(busy);
    await driver.remove(cgroup);
  });

  it('keeps the pod cgroup while a container cgroup is in it, then removes both: nothing is left in any hierarchy', async () => {
    await driver.remove(podCgroup);
    expect(await tree.exists(podCgroup)).toBe(true);
    await Promise.all(children.map(stop));
    await driver.remove(`${podCgroup}/c1`);
    await driver.remove(podCgroup);
    expect(await leftovers(tree)).toEqual([]);
    for (const dir of tree.dirs(podCgroup)) expect(existsSync(dir)).toBe(false);
    // Removing again is no error (RemoveContainer and RemovePodSandbox are idempotent).
    await driver.remove(podCgroup);
  });
});
