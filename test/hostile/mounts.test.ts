import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createContainer,
  exec,
  hostMountPoints,
  runPod,
  startHarness,
  stopHarness,
  type Harness,
  type Pod,
} from '../helpers/hostile.js';
import { useTempDirs } from '../helpers/temp.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Issue #11, "Isolation that holds": an image is hostile. Between CreateContainer and
 * StartContainer each test plants symlinks in the container's rootfs (the overlay icetray
 * mounted on the host) that point at host paths the test made, then starts the container with
 * mounts through them. Nothing may be created, written or mounted on the host (the classes of
 * runc's CVE-2021-30465 and CVE-2019-19921); the mount must be where resolving the path inside
 * the rootfs puts it — as if the rootfs were "/", which is how the container then sees it.
 */

const tempDir = useTempDirs('icetray-hostile-mounts-');

describe.skipIf(!isRoot)('symlinks in the image cannot send mounts to the host (needs root: real containers)', () => {
  let h: Harness | undefined;
  let pod: Pod;
  const harness = (): Harness => {
    if (h === undefined) throw new Error('no harness');
    return h;
  };

  beforeAll(async () => {
    h = await startHarness();
    pod = await runPod(h);
  }, 60_000);
  afterAll(async () => {
    await stopHarness(h);
  });

  /** A host folder the attack aims at, and a folder of files to bind. */
  async function target(): Promise<{ host: string; source: string }> {
    const host = await tempDir();
    const source = await tempDir();
    await writeFile(join(source, 'marker'), 'bound from the host\n');
    return { host, source };
  }

  /** What the host must still look like: `dir` empty and no mount at or below it. */
  async function untouched(dir: string): Promise<void> {
    expect(await readdir(dir)).toEqual([]);
    expect(hostMountPoints().filter((point) => point === dir || point.startsWith(`${dir}/`))).toEqual([]);
  }

  it('a bind through /escape -> <host dir> lands in the rootfs at <host dir>, not on the host', async () => {
    const { host, source } = await target();
    const c = await createContainer(harness(), pod, {
      mounts: [{ hostPath: source, containerPath: '/escape/sub' }],
    });
    await symlink(host, join(c.rootfs, 'escape'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });

    await untouched(host);
    // Inside, /escape still points at that path, which is now the container's own.
    expect((await exec(harness(), c.id, ['cat', '/escape/sub/marker'])).stdout).toBe('bound from the host\n');
    expect((await exec(harness(), c.id, ['cat', `${host}/sub/marker`])).stdout).toBe('bound from the host\n');
    // The mount point was made in the rootfs, where the in-root resolution put it.
    expect(await readdir(join(c.rootfs, host))).toEqual(['sub']);
  });

  it('a ..-chain (/a/b -> ../../../../../<host dir>/x) resolves at the rootfs, as ".." stops at "/"', async () => {
    const { host, source } = await target();
    const c = await createContainer(harness(), pod, {
      mounts: [{ hostPath: source, containerPath: '/a/b/c' }],
    });
    await mkdir(join(c.rootfs, 'a'));
    await symlink(`../../../../../../../../..${host}/x`, join(c.rootfs, 'a', 'b'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });

    await untouched(host);
    expect((await exec(harness(), c.id, ['cat', '/a/b/c/marker'])).stdout).toBe('bound from the host\n');
    expect(await readdir(join(c.rootfs, host, 'x'))).toEqual(['c']);
  });

  it("/etc/hosts -> /../../<host file>: the host file is not written or covered; the pod's hosts is bound in the rootfs", async () => {
    const host = await tempDir();
    const file = join(host, 'hosts');
    await writeFile(file, 'the host file\n');
    const c = await createContainer(harness(), pod, {});
    await symlink(`/../../..${file}`, join(c.rootfs, 'etc', 'hosts'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });

    expect(await readFile(file, 'utf8')).toBe('the host file\n');
    expect(await readdir(host)).toEqual(['hosts']);
    expect(hostMountPoints().filter((point) => point.startsWith(host))).toEqual([]);
    const inside = (await exec(harness(), c.id, ['cat', '/etc/hosts'])).stdout;
    expect(inside).toContain('localhost');
    expect(inside).not.toContain('the host file');
  });

  it('/proc -> <host dir>: procfs (and its masks) go to that path inside the rootfs, nothing on the host', async () => {
    const host = await tempDir();
    const c = await createContainer(harness(), pod, {});
    await symlink(host, join(c.rootfs, 'proc'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });

    await untouched(host);
    const mounts = (await exec(harness(), c.id, ['cat', '/proc/self/mountinfo'])).stdout;
    expect(mounts).toMatch(new RegExp(` ${host} rw,nosuid,nodev,noexec[^ ]* - proc `));
    // The default masks followed the same link: /proc/keys is /dev/null there.
    expect(mounts).toContain(` ${host}/keys `);
    expect((await exec(harness(), c.id, ['cat', '/proc/keys'])).stdout).toBe('');
  });

  it("/dev/shm of the pod and /dev entries are made in the container's own /dev tmpfs, whatever the image had at /dev", async () => {
    const host = await tempDir();
    const c = await createContainer(harness(), pod, {});
    await symlink(host, join(c.rootfs, 'dev'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });

    await untouched(host);
    const listing = (await exec(harness(), c.id, ['ls', '/dev/'])).stdout.split('\n');
    for (const name of ['null', 'zero', 'pts', 'shm', 'mqueue', 'ptmx', 'fd', 'stdin']) expect(listing).toContain(name);
  });

  it('a bind whose mount point is the container root itself is refused', async () => {
    const { source } = await target();
    const c = await createContainer(harness(), pod, {
      mounts: [{ hostPath: source, containerPath: '/up/and/away' }],
    });
    await mkdir(join(c.rootfs, 'up', 'and'), { recursive: true });
    await symlink('../..', join(c.rootfs, 'up', 'and', 'away'));
    const error = await harness()
      .t.cri.runtime.startContainer({ containerId: c.id })
      .then(() => undefined)
      .catch((err: unknown) => err as Error);
    expect(error?.message).toContain("the mount point is the container's root");
  });
});
