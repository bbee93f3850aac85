import { readdir, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import type { ContainerConfig, Device } from '../generated/api.js';

/**
 * The device nodes a container gets beyond the default set, and what the device cgroup allows
 * it (src/cgroups/devices.ts). Two sources, as in containerd (internal/cri/opts/spec_linux.go):
 * the CRI `devices` field (a device plugin's GPU, a FUSE node, …), and for a privileged
 * container every device of the host. The launcher creates the nodes in the container's /dev;
 * the cgroup lets the container open exactly these and the defaults, nothing else.
 */
export interface DeviceNode {
  /** Where the node appears in the container (absolute). */
  path: string;
  /** Character or block device. */
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** The node's permission bits, as on the host (e.g. 0o666). */
  fileMode: number;
  uid: number;
  gid: number;
  /** The device cgroup access: a non-empty subset of "rwm" (read, write, mknod). */
  access: string;
}

/** CRI Device.permissions: one or more of r, w, m; empty means all three, as OCI's default. */
function accessOf(device: Device): string {
  const permissions = device.permissions === '' ? 'rwm' : device.permissions;
  if (!/^[rwm]{1,3}$/.test(permissions) || new Set(permissions).size !== permissions.length)
    throw new InvalidArgumentError(
      `device ${JSON.stringify(device.hostPath)}: permissions ${JSON.stringify(device.permissions)} must be made of r, w and m`,
    );
  return permissions;
}

/** An absolute path without "." or ".." parts: what a container path must be before it is resolved in the rootfs. */
function checkContainerPath(path: string, what: string): void {
  if (!path.startsWith('/') || path.includes('\0') || path.split('/').some((part) => part === '..' || part === '.'))
    throw new InvalidArgumentError(`${what} ${JSON.stringify(path)} must be an absolute path without "." or ".." parts`);
}

/** The node a host path names; anything but a character or block device is refused. */
async function nodeAt(hostPath: string, path: string, access: string): Promise<DeviceNode> {
  // stat, not lstat: a device plugin may name /dev/disk/by-id/… links, as containerd follows them.
  const st = await stat(hostPath).catch((err: unknown) => {
    throw new InvalidArgumentError(`device ${JSON.stringify(hostPath)} cannot be used: ${(err as Error).message}`, {
      cause: err,
    });
  });
  if (!st.isCharacterDevice() && !st.isBlockDevice())
    throw new InvalidArgumentError(`device ${JSON.stringify(hostPath)} is not a character or block device`);
  return {
    path,
    type: st.isCharacterDevice() ? 'c' : 'b',
    // Linux's dev_t: major in bits 8–19 (and 32–43), minor in bits 0–7 and 20–31 (glibc's gnu_dev_major/minor).
    major: Number(((BigInt(st.rdev) >> 8n) & 0xfffn) | ((BigInt(st.rdev) >> 32n) & ~0xfffn)),
    minor: Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & ~0xffn)),
    fileMode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    access,
  };
}

/** Folders of the host's /dev that hold no devices of their own to pass on (mounts the container makes itself). */
const HOST_DEV_SKIPPED = new Set(['/dev/pts', '/dev/shm', '/dev/mqueue']);

/** Every character and block device under the host's /dev: what a privileged container sees, as with containerd. */
async function hostDevices(dir = '/dev'): Promise<DeviceNode[]> {
  const nodes: DeviceNode[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !HOST_DEV_SKIPPED.has(path)) nodes.push(...(await hostDevices(path)));
    else if (entry.isCharacterDevice() || entry.isBlockDevice()) {
      // A node that vanished while the folder was read is skipped.
      const node = await nodeAt(path, path, 'rwm').catch(() => undefined);
      if (node !== undefined) nodes.push(node);
    }
  }
  return nodes;
}

/**
 * The extra device nodes of a container: the config's `devices`, and for a privileged container
 * the host's too. Malformed entries are InvalidArgument, before anything is made.
 */
export async function containerDevices(config: Pick<ContainerConfig, 'devices' | 'linux'>): Promise<DeviceNode[]> {
  const requested: DeviceNode[] = [];
  for (const device of config.devices) {
    checkContainerPath(device.containerPath, 'device container_path');
    if (!device.hostPath.startsWith('/'))
      throw new InvalidArgumentError(`device host_path ${JSON.stringify(device.hostPath)} must be an absolute path`);
    requested.push(await nodeAt(device.hostPath, posix.normalize(device.containerPath), accessOf(device)));
  }
  if (config.linux?.securityContext?.privileged !== true) return requested;
  // A requested node wins over the host's node at the same path.
  const taken = new Set(requested.map((node) => node.path));
  return [...requested, ...(await hostDevices()).filter((node) => !taken.has(node.path))];
}
