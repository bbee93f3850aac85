import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { FailedPreconditionError } from '../errors.js';
import { checkDriverRecord, recordDriver } from './state-record.js';

const tempDir = useTempDirs('icetray-driver-');

describe('cgroup driver record', () => {
  it('refuses another driver while pods exist, saying why and what to do', async () => {
    const dir = await tempDir();
    await checkDriverRecord(dir, 'systemd', true);
    await recordDriver(dir, 'cgroupfs');
    expect(await readFile(join(dir, 'cgroup-driver'), 'utf8')).toBe('cgroupfs\n');
    await checkDriverRecord(dir, 'cgroupfs', true);
    const refused = checkDriverRecord(dir, 'systemd', true);
    await expect(refused).rejects.toThrow(FailedPreconditionError);
    await expect(refused).rejects.toThrow(/made with "cgroupfs".*drain the node.*remove all pods/);
  });

  it('lets the driver change once no pods are left, and records the new one', async () => {
    const dir = await tempDir();
    await recordDriver(dir, 'cgroupfs');
    await checkDriverRecord(dir, 'systemd', false);
    await recordDriver(dir, 'systemd');
    await checkDriverRecord(dir, 'systemd', true);
  });
});
