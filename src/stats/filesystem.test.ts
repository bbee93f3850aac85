import { stat } from 'node:fs/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { filesystemOf } from './filesystem.js';
import { openFiles } from './process-files.js';

const tempDir = useTempDirs('icetray-fs-');

describe('filesystemOf', () => {
  it('names the device of a folder from mountinfo by its major:minor, with statfs sizes', async () => {
    const dir = await tempDir();
    const dev = (await stat(dir, { bigint: true })).dev;
    const id = `${((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)}:${(dev & 0xffn) | ((dev >> 12n) & ~0xffn)}`;
    const mountinfo = join(dir, 'mountinfo');
    await writeFile(mountinfo, `22 1 0:99 / /other rw - tmpfs tmpfs rw\n27 1 ${id} / / rw,relatime - ext4 /dev/test1 rw\n`);
    const fs = await filesystemOf(dir, mountinfo);
    expect(fs.device).toBe('/dev/test1');
    expect(fs.capacityBytes).toBeGreaterThan(0n);
    expect(fs.inodes).toBeGreaterThanOrEqual(fs.inodesFree);
    // A source that is no device path (tmpfs, overlay) is named by major:minor.
    await writeFile(mountinfo, `27 1 ${id} / / rw - tmpfs tmpfs rw\n`);
    expect((await filesystemOf(dir, mountinfo)).device).toBe(id);
  });
});

describe('openFiles', () => {
  it('counts descriptors and sockets of the processes given, and none for a process that is gone', async () => {
    const own = await openFiles([process.pid]);
    expect(own.fds).toBeGreaterThan(2n);
    expect(await openFiles([2 ** 22 + 1])).toEqual({ fds: 0n, sockets: 0n });
  });
});
