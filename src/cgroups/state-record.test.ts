import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '../errors.js';
import { checkDriverRecord, recordDriver } from './state-record.js';

describe('cgroup driver record', () => {
  it('refuses another driver while pods exist, saying why and what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'icetray-driver-'));
    await checkDriverRecord(dir, 'systemd', true);
    await recordDriver(dir, 'cgroupfs');
    expect(await readFile(join(dir, 'cgroup-driver'), 'utf8')).toBe('cgroupfs\n');
    await checkDriverRecord(dir, 'cgroupfs', true);
    const refused = checkDriverRecord(dir, 'systemd', true);
    await expect(refused).rejects.toThrow(FailedPreconditionError);
    await expect(refused).rejects.toThrow(/made with "cgroupfs".*drain the node.*remove all pods/);
  });

  it('lets the driver change once no pods are left, and records the new one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'icetray-driver-'));
    await recordDriver(dir, 'cgroupfs');
    await checkDriverRecord(dir, 'systemd', false);
    await recordDriver(dir, 'systemd');
    await checkDriverRecord(dir, 'systemd', true);
  });
});
