import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { FailedPreconditionError } from '../errors.js';
import { LinuxContainerResources } from '../generated/api.js';
import { CgroupTree } from './cgroup-files.js';
import { DEFAULT_DEVICE_ACCESS, devicePolicy } from './devices.js';
import { createDriver } from './driver.js';
import { cpusetMask, deviceProperties, SystemdDriver, unitProperties } from './systemd.js';
import type { SystemdManager, UnitProperty } from './systemd-bus.js';

const props = (partial: Partial<LinuxContainerResources>, version: 1 | 2) =>
  Object.fromEntries(
    unitProperties(LinuxContainerResources.fromPartial(partial), version).map(([name, v]) => [name, v.value as unknown]),
  );

describe('systemd unit properties', () => {
  it('maps CRI resources to v1 properties, rounding the quota up to whole percents', () => {
    expect(props({ cpuShares: 512n, cpuQuota: 33_333n, cpuPeriod: 100_000n, memoryLimitInBytes: 1024n }, 1)).toEqual({
      CPUShares: 512n,
      CPUQuotaPeriodUSec: 100_000n,
      CPUQuotaPerSecUSec: 340_000n,
      MemoryMax: 1024n,
    });
  });

  it('maps them to v2 properties: weight, swap beyond memory, cpuset masks', () => {
    expect(
      props(
        { cpuShares: 1024n, memoryLimitInBytes: 1000n, memorySwapLimitInBytes: -1n, cpusetCpus: '0-2,9', cpusetMems: '0' },
        2,
      ),
    ).toEqual({
      CPUWeight: 39n,
      MemoryMax: 1000n,
      MemorySwapMax: 2n ** 64n - 1n,
      AllowedCPUs: Buffer.from([0b0000_0111, 0b0000_0010]),
      AllowedMemoryNodes: Buffer.from([1]),
    });
    expect(props({ cpuQuota: -1n }, 2)).toEqual({ CPUQuotaPerSecUSec: 2n ** 64n - 1n });
  });

  it('refuses a malformed cpuset', () => {
    expect(() => cpusetMask('3-1')).toThrow(/backwards/);
    expect(() => cpusetMask('a')).toThrow(/not a list/);
  });
});

const tempDir = useTempDirs('icetray-nosystemd-');

describe('systemd driver availability', () => {
  it('fails at start with the reason and the fix when systemd is not PID 1', async () => {
    const root = await tempDir();
    await writeFile(join(root, 'cgroup.controllers'), 'memory\n');
    const made = createDriver({ name: 'systemd', root, systemdRoot: root });
    await expect(made).rejects.toThrow(FailedPreconditionError);
    await expect(made).rejects.toThrow(/needs systemd as PID 1.*cgroup_driver = "cgroupfs"/);
  });
});

describe('systemd device properties', () => {
  it('gives the default set as DevicePolicy=strict and DeviceAllow= entries systemd parses without a node', () => {
    const props = Object.fromEntries(
      deviceProperties(devicePolicy(DEFAULT_DEVICE_ACCESS)).map(([name, v]) => [name, v.value as unknown]),
    );
    expect(props).toEqual({
      DevicePolicy: 'strict',
      DeviceAllow: [
        ['char-*', 'm'],
        ['block-*', 'm'],
        ['/dev/char/1:3', 'rwm'],
        ['/dev/char/1:5', 'rwm'],
        ['/dev/char/1:7', 'rwm'],
        ['/dev/char/1:8', 'rwm'],
        ['/dev/char/1:9', 'rwm'],
        ['/dev/char/5:0', 'rwm'],
        ['/dev/char/5:1', 'rwm'],
        ['/dev/char/5:2', 'rwm'],
        ['char-136', 'rwm'],
      ],
    });
    const loop = deviceProperties(devicePolicy({ privileged: false, nodes: [{ type: 'b', major: 7, minor: 0, access: 'r' }] }));
    expect((loop[1]?.[1].value as string[][]).at(-1)).toEqual(['/dev/block/7:0', 'r']);
  });

  it('gives a privileged container DevicePolicy=auto and no entries: no restriction', () => {
    expect(deviceProperties({ kind: 'all' }).map(([name, v]) => [name, v.value as unknown])).toEqual([
      ['DevicePolicy', 'auto'],
      ['DeviceAllow', []],
    ]);
  });
});

/**
 * A stand-in for systemd on a fake hybrid tree: starting a scope makes its folders and writes
 * devices.list from the DeviceAllow= it was given, as systemd on v1 would (less `drop` entries,
 * as systemd's best-effort writes can lose some).
 */
function fakeSystemd(root: string, drop = 0): SystemdManager & { started: Map<string, UnitProperty[]> } {
  const started = new Map<string, UnitProperty[]>();
  return {
    started,
    startTransientUnit: async (unit, properties) => {
      started.set(unit, properties);
      const value = (name: string) => properties.find(([n]) => n === name)?.[1].value as unknown;
      const slice = value('Slice') as string;
      const path = `/${slice}/${unit}`;
      for (const h of ['devices', 'unified', 'systemd']) await mkdir(join(root, h, path), { recursive: true });
      const entries = (value('DeviceAllow') as [string, string][]).slice(drop);
      const list =
        value('DevicePolicy') === 'auto'
          ? 'a *:* rwm\n'
          : entries
              .map(([device, access]) => {
                const m = /^(?:\/dev\/(char|block)\/(\d+):(\d+)|(char|block)-(\*|\d+))$/.exec(device);
                const type = (m?.[1] ?? m?.[4]) === 'char' ? 'c' : 'b';
                return m?.[2] !== undefined ? `${type} ${m[2]}:${m[3]} ${access}` : `${type} ${m?.[5]}:* ${access}`;
              })
              .join('\n');
      await writeFile(join(root, 'devices', path, 'devices.list'), list);
    },
    stopUnit: () => Promise.resolve(),
    setUnitProperties: () => Promise.resolve(),
    close: () => undefined,
  };
}

async function fakeHybridRoot(): Promise<string> {
  const root = await tempDir();
  for (const h of ['devices', 'systemd', 'unified']) {
    await mkdir(join(root, h));
    await writeFile(join(root, h, 'cgroup.procs'), '');
  }
  await writeFile(join(root, 'unified', 'cgroup.controllers'), '');
  return root;
}

describe('systemd driver device allowlist (fake systemd)', () => {
  it('starts the scope with the device properties, checks devices.list, and attaches the program in unified', async () => {
    const root = await fakeHybridRoot();
    const manager = fakeSystemd(root);
    const attached: string[] = [];
    const driver = new SystemdDriver(manager, await CgroupTree.open(root), 1, (dir) => {
      attached.push(dir);
      return Promise.resolve();
    });
    const cgroup = await driver.createContainer('/pod.slice', 'c1');
    await driver.addProcess(cgroup, process.pid);
    const props = manager.started.get('icetray-c1.scope') ?? [];
    expect(props.find(([name]) => name === 'DevicePolicy')?.[1].value).toBe('strict');
    expect(attached).toEqual([join(root, 'unified', cgroup)]);
  });

  it('refuses to let the process run when systemd applied a different allowlist', async () => {
    const root = await fakeHybridRoot();
    const driver = new SystemdDriver(fakeSystemd(root, 1), await CgroupTree.open(root), 1, () => Promise.resolve());
    const cgroup = await driver.createContainer('/pod.slice', 'c1');
    await expect(driver.addProcess(cgroup, process.pid)).rejects.toThrow(/not the one asked for/);
  });

  it('checks a privileged scope is allowed everything, and attaches nothing', async () => {
    const root = await fakeHybridRoot();
    const attached: string[] = [];
    const driver = new SystemdDriver(fakeSystemd(root), await CgroupTree.open(root), 1, (dir) => {
      attached.push(dir);
      return Promise.resolve();
    });
    const cgroup = await driver.createContainer('/pod.slice', 'c1', undefined, { privileged: true, nodes: [] });
    await driver.addProcess(cgroup, process.pid);
    // devices.list said "a *:* rwm", as asked; anything narrower would have failed the start.
    expect(attached).toEqual([]);
  });
});
