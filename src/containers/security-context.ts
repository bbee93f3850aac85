import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, UnimplementedError } from '../errors.js';
import { RECURSIVE_READONLY_MOUNTS } from '../os/kernel.js';
import {
  MountPropagation,
  SecurityProfile_ProfileType,
  SupplementalGroupsPolicy,
  type LinuxContainerSecurityContext,
  type Mount,
} from '../generated/api.js';
import { checkAbsolutePath } from '../validate.js';
import { validateSeccomp } from './seccomp.js';

/**
 * A container's security context turned into what the launcher applies: user and groups,
 * capabilities, masked and read-only paths (the seccomp profile is seccomp.ts). The rules are containerd's
 * (internal/cri/opts/spec_linux.go and oci/spec_opts.go), written down here once.
 */

/** Linux capability numbers (include/uapi/linux/capability.h). */
const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
] as const; // prettier-ignore

/** containerd's default set (the same as Docker's): enough for ordinary images, no NET_ADMIN, no SYS_ADMIN. */
export const DEFAULT_CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP',
  'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
]; // prettier-ignore

/** containerd's default masked and read-only paths for a non-privileged container. */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
]; // prettier-ignore
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

function capabilityName(name: string): string {
  const bare = name.toUpperCase().replace(/^CAP_/, '');
  if (bare !== 'ALL' && !(CAPABILITIES as readonly string[]).includes(bare))
    throw new InvalidArgumentError(`unknown capability "${name}"`);
  return bare;
}

/** The capability bitmask: privileged gets all; otherwise the default set, plus adds, minus drops ("ALL" allowed in both). */
export function capabilityMask(context: LinuxContainerSecurityContext | undefined): bigint {
  const all = new Set<string>(CAPABILITIES);
  let caps = new Set<string>(context?.privileged === true ? all : DEFAULT_CAPABILITIES);
  if (context?.privileged !== true) {
    const add = (context?.capabilities?.addCapabilities ?? []).map(capabilityName);
    const drop = (context?.capabilities?.dropCapabilities ?? []).map(capabilityName);
    if (add.includes('ALL')) caps = new Set(all);
    else for (const cap of add) caps.add(cap);
    if (drop.includes('ALL')) caps = new Set(add.filter((cap) => cap !== 'ALL'));
    else for (const cap of drop) caps.delete(cap);
  }
  let mask = 0n;
  for (const cap of caps) mask |= 1n << BigInt(CAPABILITIES.indexOf(cap as (typeof CAPABILITIES)[number]));
  return mask;
}

export interface ProcessUser {
  uid: number;
  gid: number;
  /** Supplementary groups: those /etc/group lists the user in (unless the policy is Strict), then the config's. */
  groups: number[];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

async function readLines(path: string): Promise<string[][]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

async function passwd(rootfs: string): Promise<PasswdEntry[]> {
  return (await readLines(join(rootfs, 'etc', 'passwd'))).map(([name = '', , uid = '', gid = '']) => ({
    name,
    uid: Number(uid),
    gid: Number(gid),
  }));
}

/** Mounts icetray cannot make, refused at CreateContainer rather than at start. */
export function validateMounts(mounts: readonly Mount[]): void {
  for (const mount of mounts) {
    // Declined on purpose: UNIMPLEMENTED is how clients (critest) learn there are no image volumes.
    if (mount.image !== undefined && mount.image.image !== '') {
      throw new UnimplementedError(`mount ${mount.containerPath}: image volumes are not supported`);
    }
    // Both are paths of a filesystem, never relative to icetray's working directory; the
    // container path is resolved inside the rootfs (nsexec), so ".." could only be an attempt to leave it.
    checkAbsolutePath(mount.hostPath, 'mount host_path');
    checkAbsolutePath(mount.containerPath, 'mount container_path');
    if (mount.recursiveReadOnly) {
      // CRI: "when set to true, readonly must be explicitly set to true, and propagation must be PRIVATE".
      if (!mount.readonly)
        throw new InvalidArgumentError(`mount ${mount.containerPath}: recursive_read_only needs readonly to be true as well`);
      if (mount.propagation !== MountPropagation.PROPAGATION_PRIVATE)
        throw new InvalidArgumentError(`mount ${mount.containerPath}: recursive_read_only needs private propagation`);
      if (!RECURSIVE_READONLY_MOUNTS)
        throw new InvalidArgumentError(
          `mount ${mount.containerPath}: recursive_read_only needs Linux 5.12 or later (mount_setattr)`,
        );
    }
    for (const option of mount.mountOptions) {
      if (!MOUNT_OPTIONS.includes(option))
        throw new InvalidArgumentError(
          `mount ${mount.containerPath}: mount option "${option}" is not supported (only ${MOUNT_OPTIONS.join(', ')})`,
        );
    }
  }
}

/** The extra bind mount options a mount may ask for (Mount.mount_options). */
export const MOUNT_OPTIONS = ['nosuid', 'nodev', 'noexec'];

/**
 * Linux ids are 32 bits, and (uid_t)-1 means "no change" to setresuid(2): a larger value would
 * be cut to its low 32 bits (2^40 becomes 0, root), -1 would keep icetray's own uid.
 */
const MAX_ID = 2 ** 32 - 2;

function checkLinuxId(value: bigint | number, what: string): number {
  if (value < 0 || value > MAX_ID)
    throw new InvalidArgumentError(`${what} ${String(value)} is not a Linux id (0 to ${String(MAX_ID)})`);
  return Number(value);
}

/** Rejects what can be told wrong before anything is made (CreateContainer). */
export function validateSecurityContext(context: LinuxContainerSecurityContext | undefined): void {
  // containerd's rule: a group alone is ambiguous — whose primary group would it replace?
  if (context?.runAsGroup !== undefined && context.runAsUser === undefined && context.runAsUsername === '') {
    throw new InvalidArgumentError('security context: run_as_group is set without run_as_user or run_as_username');
  }
  if (context?.runAsUser !== undefined) checkLinuxId(context.runAsUser.value, 'run_as_user');
  if (context?.runAsGroup !== undefined) checkLinuxId(context.runAsGroup.value, 'run_as_group');
  for (const group of context?.supplementalGroups ?? []) checkLinuxId(group, 'supplemental group');
  capabilityMask(context);
  validateSeccomp(context);
  const apparmor = context?.apparmor;
  if (apparmor !== undefined && apparmor.profileType !== SecurityProfile_ProfileType.Unconfined) {
    throw new InvalidArgumentError(
      'AppArmor profiles are not supported: this host has no AppArmor, only "unconfined" can be honoured',
    );
  }
}

/**
 * Who the process runs as: run_as_user / run_as_username, else the image's USER ("name", "uid",
 * "name:group", "uid:gid"), else root; names resolved in the container's own /etc/passwd and
 * /etc/group, as the kubelet and containerd do.
 */
export async function resolveUser(
  rootfs: string,
  context: LinuxContainerSecurityContext | undefined,
  imageUser: string,
): Promise<ProcessUser> {
  const users = await passwd(rootfs);
  const groupsFile = await readLines(join(rootfs, 'etc', 'group'));
  let name: string | undefined;
  let uid: number;
  let gid: number | undefined;
  const [userPart = '', groupPart] = imageUser.split(':');
  if (context?.runAsUser !== undefined) {
    uid = checkLinuxId(context.runAsUser.value, 'run_as_user');
  } else if (context !== undefined && context.runAsUsername !== '') {
    const entry = users.find((u) => u.name === context.runAsUsername);
    if (entry === undefined) throw new InvalidArgumentError(`user "${context.runAsUsername}" is not in the image's /etc/passwd`);
    uid = entry.uid;
    name = entry.name;
  } else if (userPart === '') {
    uid = 0;
  } else if (/^\d+$/.test(userPart)) {
    uid = checkLinuxId(Number(userPart), 'image user');
  } else {
    const entry = users.find((u) => u.name === userPart);
    if (entry === undefined) throw new InvalidArgumentError(`image user "${userPart}" is not in the image's /etc/passwd`);
    uid = entry.uid;
  }
  const entry = users.find((u) => u.uid === uid);
  name ??= entry?.name;
  if (context?.runAsGroup !== undefined) {
    gid = checkLinuxId(context.runAsGroup.value, 'run_as_group');
  } else if (context?.runAsUser === undefined && groupPart !== undefined && groupPart !== '') {
    gid = /^\d+$/.test(groupPart)
      ? checkLinuxId(Number(groupPart), 'image group')
      : Number(groupsFile.find(([group]) => group === groupPart)?.[2] ?? Number.NaN);
    if (Number.isNaN(gid)) throw new InvalidArgumentError(`image group "${groupPart}" is not in the image's /etc/group`);
  }
  gid ??= entry?.gid ?? 0;
  // SupplementalGroupsPolicy Merge (the default) adds the groups the image's /etc/group lists
  // the user in; Strict takes only the config's (KEP 3619).
  const strict = context?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict;
  const member =
    name === undefined || strict
      ? []
      : groupsFile.filter(([, , , members = '']) => members.split(',').includes(name)).map(([, , id = '']) => Number(id));
  const extra = (context?.supplementalGroups ?? []).map((group) => checkLinuxId(group, 'supplemental group'));
  return { uid, gid, groups: [...new Set([...member, ...extra])] };
}
