import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { FailedPreconditionError } from '../errors.js';
import { LinuxContainerResources } from '../generated/api.js';
import { createDriver } from './driver.js';
import { cpusetMask, unitProperties } from './systemd.js';

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
