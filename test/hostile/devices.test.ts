import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CgroupTree } from '../../src/cgroups/cgroup-files.js';
import {
  DEFAULT_DEVICE_ACCESS,
  devicePolicy,
  parseDevicesList,
  samePolicy,
  type DeviceAccess,
} from '../../src/cgroups/devices.js';
import { createDriver, type CgroupDriver } from '../../src/cgroups/driver.js';
import { containerDevices } from '../../src/containers/devices.js';
import { Device } from '../../src/generated/api.js';
import { useTempDirs } from '../helpers/temp.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Issue #11 on the real kernel: a process in a container cgroup the cgroupfs driver made cannot
 * use a device outside its allowlist, however it gets a node for it (mknod of the host's loop0,
 * the host's /dev/kmsg). Each mechanism is proven on its own too: a process placed only in the
 * v1 devices cgroup (no program on its v2 cgroup), and one placed only in the v2 cgroup with the
 * program (its v1 devices cgroup the permissive root). Count before, attack, check after: every
 * cgroup and every node made is removed.
 */
const ROOT = '/sys/fs/cgroup';
const top = `/icetray-devices-${process.pid}-${Date.now().toString(36)}`;
const pod = `${top}/pod`;
const why = !isRoot
  ? 'needs root: writes /sys/fs/cgroup and mknods'
  : !existsSync('/dev/loop0')
    ? 'needs /dev/loop0 (block 7:0) to attack'
    : undefined;
const tempDir = useTempDirs('icetray-devices-');

/** What a probe tried, and "ok" or the error it got. */
type Results = Record<string, string>;

/**
 * Shell checks, each run in a subshell so one failure does not stop the rest. `exec 3<>` opens
 * without reading or writing a byte, so a check that wrongly passes still writes nothing to a device.
 */
function checks(dir: string): [string, string][] {
  return [
    ['read /dev/null', 'cat /dev/null'],
    ['read /dev/zero', 'dd if=/dev/zero of=/dev/null bs=8 count=1'],
    ['read /dev/urandom', 'dd if=/dev/urandom of=/dev/null bs=8 count=1'],
    ['open /dev/ptmx', 'exec 3<>/dev/ptmx'],
    ['open /dev/kmsg', 'exec 3</dev/kmsg'],
    ['mknod loop0', `mknod ${dir}/loop0-$$ b 7 0`],
    ['read the mknod loop0', `dd if=${dir}/loop0-$$ of=/dev/null bs=512 count=1`],
    ['open the mknod loop0 for writing', `exec 3>>${dir}/loop0-$$`],
    ['read /dev/loop0', 'dd if=/dev/loop0 of=/dev/null bs=512 count=1'],
  ];
}

const OK = 'ok';
const EPERM = /Operation not permitted/;

describe.skipIf(why !== undefined)(`device allowlist on the real kernel${why === undefined ? '' : ` (skipped: ${why})`}`, () => {
  let driver: CgroupDriver;
  let tree: CgroupTree;
  const made: string[] = [];

  beforeAll(async () => {
    driver = await createDriver({ name: 'cgroupfs', root: ROOT });
    tree = await CgroupTree.open(ROOT);
    expect(await driver.createPod({ podUid: 'devices', sandboxId: 'devices', cgroupParent: pod })).toBe(pod);
  });

  afterAll(async () => {
    for (const cgroup of made.reverse()) await driver.remove(cgroup).catch(() => undefined);
    await driver.remove(pod).catch(() => undefined);
    await tree.remove(top);
    for (const dir of tree.dirs(top)) expect(existsSync(dir)).toBe(false);
  });

  async function container(id: string, devices?: DeviceAccess): Promise<string> {
    const cgroup = await driver.createContainer(pod, id, undefined, devices);
    made.push(cgroup);
    return cgroup;
  }

  /** The names of the hierarchies a probe joins: all, only the v1 devices one, or only the v2 one. */
  const placements = {
    'both mechanisms': () => undefined,
    'the v1 devices controller alone': () => tree.hierarchies.filter((h) => h.controllers.includes('devices')).map((h) => h.name),
    'the eBPF program alone': () => tree.hierarchies.filter((h) => h.v2).map((h) => h.name),
  };
  type Placement = keyof typeof placements;
  const available = (placement: Placement) => placements[placement]()?.length !== 0;

  /** Runs the checks in a shell placed in the cgroup (in the hierarchies named) before it runs them. */
  async function probe(cgroup: string, placement: Placement): Promise<Results> {
    const dir = await tempDir();
    const script = checks(dir)
      .map(([name, cmd]) => `if out=$( (${cmd}) 2>&1); then echo "${name}=ok"; else echo "${name}=$(echo $out)"; fi`)
      .join('\n');
    const child = spawn('sh', ['-c', `read go\n${script}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const names = placements[placement]();
      await tree.addProcess(cgroup, child.pid ?? 0, names);
      child.stdin.end('go\n');
      await exited;
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    return Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.split('=', 2) as [string, string]),
    );
  }

  it('writes the default allowlist to the v1 controller: devices.list reads it back', async () => {
    const cgroup = await container('default');
    if (tree.hasController('devices')) {
      const list = (await tree.read(cgroup, 'devices.list')) ?? '';
      expect(samePolicy(parseDevicesList(list), devicePolicy(DEFAULT_DEVICE_ACCESS))).toBe(true);
      expect(list).toContain('b *:* m');
      expect(list).not.toContain('b 7:0');
    }
  });

  describe.each(Object.keys(placements) as Placement[])('with %s', (placement) => {
    it('lets the default set be used and nothing else: mknod of loop0 works, reading it is EPERM', async (ctx) => {
      ctx.skip(!available(placement), `no ${placement} on this host`);
      const results = await probe(`${pod}/default`, placement);
      for (const name of ['read /dev/null', 'read /dev/zero', 'read /dev/urandom', 'open /dev/ptmx', 'mknod loop0'])
        expect(results[name], name).toBe(OK);
      for (const name of ['read the mknod loop0', 'open the mknod loop0 for writing', 'read /dev/loop0', 'open /dev/kmsg'])
        expect(results[name], name).toMatch(EPERM);
    });

    it('lets a device given "r" in the CRI devices field be read, but not written', async (ctx) => {
      ctx.skip(!available(placement), `no ${placement} on this host`);
      const id = 'loop-r';
      if (!made.includes(`${pod}/${id}`)) {
        const nodes = await containerDevices({
          devices: [Device.fromPartial({ hostPath: '/dev/loop0', containerPath: '/dev/loop0', permissions: 'r' })],
          linux: undefined,
        });
        expect(nodes).toMatchObject([{ type: 'b', major: 7, minor: 0, access: 'r' }]);
        await container(id, { privileged: false, nodes });
      }
      const results = await probe(`${pod}/${id}`, placement);
      expect(results['read /dev/loop0']).toBe(OK);
      expect(results['read the mknod loop0']).toBe(OK);
      expect(results['open the mknod loop0 for writing']).toMatch(EPERM);
      expect(results['open /dev/kmsg']).toMatch(EPERM);
      expect(results['read /dev/null']).toBe(OK);
    });
  });

  it('lets a privileged container open anything', async () => {
    const cgroup = await container('privileged', { privileged: true, nodes: [] });
    if (tree.hasController('devices')) expect((await tree.read(cgroup, 'devices.list'))?.trim()).toBe('a *:* rwm');
    const results = await probe(cgroup, 'both mechanisms');
    expect(Object.values(results).every((r) => r === OK)).toBe(true);
    expect(Object.keys(results)).toHaveLength(checks('').length);
  });

  it('removes every cgroup it made, in every hierarchy', async () => {
    for (const cgroup of made.splice(0)) await driver.remove(cgroup);
    await driver.remove(pod);
    expect(await tree.exists(pod)).toBe(false);
  });
});
