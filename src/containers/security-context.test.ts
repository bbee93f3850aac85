import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { InvalidArgumentError } from '../errors.js';
import { LinuxContainerSecurityContext, SupplementalGroupsPolicy } from '../generated/api.js';
import { resolveUser, validateSecurityContext } from './security-context.js';

const tempDir = useTempDirs('icetray-user-');

/** A rootfs with only the files user resolution reads, like critest's test-image-predefined-group. */
async function rootfs(): Promise<string> {
  const dir = await tempDir();
  await mkdir(join(dir, 'etc'));
  await writeFile(
    join(dir, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n',
  );
  await writeFile(
    join(dir, 'etc', 'group'),
    'root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\nweb:x:33:\n',
  );
  return dir;
}

const context = (fields: Partial<LinuxContainerSecurityContext>): LinuxContainerSecurityContext =>
  LinuxContainerSecurityContext.fromPartial(fields);

describe('resolveUser', () => {
  it("takes the image's USER, its primary group from /etc/passwd, and the groups /etc/group lists it in", async () => {
    expect(await resolveUser(await rootfs(), undefined, 'default-user')).toEqual({ uid: 1000, gid: 1000, groups: [50000] });
    expect(await resolveUser(await rootfs(), undefined, '')).toEqual({ uid: 0, gid: 0, groups: [] });
    expect(await resolveUser(await rootfs(), undefined, '1000:web')).toEqual({ uid: 1000, gid: 33, groups: [50000] });
  });

  it('adds supplemental_groups to the image groups (Merge, the default), or uses them alone (Strict)', async () => {
    const merge = context({ runAsUser: { value: 1000n }, supplementalGroups: [1234n] });
    expect(await resolveUser(await rootfs(), merge, '')).toEqual({ uid: 1000, gid: 1000, groups: [50000, 1234] });
    const strict = context({ ...merge, supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict });
    expect(await resolveUser(await rootfs(), strict, '')).toEqual({ uid: 1000, gid: 1000, groups: [1234] });
  });

  it('refuses a user name the image does not have', async () => {
    await expect(resolveUser(await rootfs(), context({ runAsUsername: 'nobody-here' }), '')).rejects.toThrow(
      InvalidArgumentError,
    );
  });
});

describe('Linux ids (H3 fuzz: run_as_user 2^40 ran as root)', () => {
  it.each([
    ['run_as_user 2^40, which 32 bits would cut to 0 (root)', { runAsUser: { value: 2n ** 40n } }],
    ['run_as_user -1, which setresuid takes as "keep"', { runAsUser: { value: -1n } }],
    ['run_as_user 2^32 - 1', { runAsUser: { value: 2n ** 32n - 1n } }],
    ['run_as_group 2^32', { runAsUser: { value: 1n }, runAsGroup: { value: 2n ** 32n } }],
    ['a supplemental group past 32 bits', { supplementalGroups: [2n ** 33n] }],
  ])('refuses %s as InvalidArgument', (_, fields) => {
    expect(() => validateSecurityContext(context(fields))).toThrow(InvalidArgumentError);
  });

  it('takes the largest real id', () => {
    expect(() => validateSecurityContext(context({ runAsUser: { value: 2n ** 32n - 2n } }))).not.toThrow();
  });

  it('refuses an image USER that is not a Linux id', async () => {
    await expect(resolveUser(await rootfs(), undefined, '4294967296')).rejects.toThrow(InvalidArgumentError);
  });
});
