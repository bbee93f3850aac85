import type { DeviceNode } from '../containers/devices.js';
import { InvalidArgumentError, UnavailableError } from '../errors.js';
import type { CgroupTree } from './cgroup-files.js';

/**
 * Which devices a container may use: the device cgroup's allowlist (issue #11). Opening a device
 * node, or making one with mknod(2), passes the kernel's device check for the opener's cgroup
 * whatever the node's file permissions say; without an allowlist a container with CAP_MKNOD can
 * make a node for the host's disk and read it. Every non-privileged container (and pause) gets
 * DEFAULT_DEVICES plus the devices its config asks for; a privileged one gets all of them, as
 * with containerd, CRI-O and runc.
 *
 * The rules are enforced by whatever the host has, and by all of it on a hybrid host:
 *   cgroup v1   the devices controller: `devices.deny a`, then one `devices.allow` line per rule
 *               (v1DeviceWrites below);
 *   cgroup v2   an eBPF program attached to the cgroup (device-program.ts), and on a hybrid host
 *               the same program on the cgroup's folder in the v2 ("unified") hierarchy, which
 *               the kernel checks as well as the v1 controller;
 *   systemd     the scope's DevicePolicy= and DeviceAllow= (systemd.ts), which systemd turns into
 *               either of the above.
 */

/** What a container may use: its config's device nodes (src/containers/devices.ts), or all when privileged. */
export interface DeviceAccess {
  /** A privileged container may open and mknod every device. */
  privileged: boolean;
  /** Devices beyond the default set (the CRI `devices` field), each with its "rwm"-subset access. */
  nodes: readonly Pick<DeviceNode, 'type' | 'major' | 'minor' | 'access'>[];
}

/** The default: what pause and a container that asks for no devices get. */
export const DEFAULT_DEVICE_ACCESS: DeviceAccess = { privileged: false, nodes: [] };

/** One allow rule, as the v1 devices controller spells it ("c 1:3 rwm", "c 136:* rwm"). */
export interface DeviceRule {
  type: 'c' | 'b';
  major: number | '*';
  minor: number | '*';
  /** A non-empty subset of "rwm", in that order: r open for reading, w for writing, m mknod(2). */
  access: string;
}

/** Either no restriction at all (privileged), or exactly these rules and nothing else. */
export type DevicePolicy = { kind: 'all' } | { kind: 'allowlist'; rules: readonly DeviceRule[] };

interface DefaultDevice {
  what: string;
  rule: DeviceRule;
  why: string;
}

const rule = (type: 'c' | 'b', major: number | '*', minor: number | '*', access: string): DeviceRule => ({
  type,
  major,
  minor,
  access,
});

/**
 * The devices every container may use: containerd's list (pkg/oci WithDefaultUnixDevices, which
 * CRI-O's matches) plus runc's two mknod rules (libcontainer/specconv AllowedDevices, which runc
 * adds under every container containerd or CRI-O starts).
 *
 * Two of runc's additions are decided differently, by one test: does the rule let a container read
 * or write something? The "m" rules do not: a node a container makes is inert unless an r or w rule
 * also names it (the kernel checks again at open). They are needed: nsexec mknods the container's
 * /dev nodes from inside its cgroup, a device granted only "r" included, and image builds,
 * package installs (makedev, debootstrap) and tar extraction inside containers mknod nodes they
 * never open, so refusing them would break workloads that run under every other runtime. runc's tun rule (c 10:200 rwm, kept
 * there only for compatibility with old Docker) does give access, to a kernel interface: it is
 * left out, and a pod that needs /dev/net/tun asks for it in `devices`, as it must with
 * containerd's list. (A node made in a volume the host shares is one a host process could be
 * fooled into opening; mount such volumes nodev.)
 */
export const DEFAULT_DEVICES: readonly DefaultDevice[] = [
  { what: 'any character device, mknod only', rule: rule('c', '*', '*', 'm'), why: 'inert without r or w (above)' },
  { what: 'any block device, mknod only', rule: rule('b', '*', '*', 'm'), why: 'inert without r or w (above)' },
  { what: '/dev/null', rule: rule('c', 1, 3, 'rwm'), why: 'the sink and empty source every program expects' },
  { what: '/dev/zero', rule: rule('c', 1, 5, 'rwm'), why: 'zero-filled reads and anonymous mappings' },
  { what: '/dev/full', rule: rule('c', 1, 7, 'rwm'), why: 'tests of disk-full handling' },
  { what: '/dev/random', rule: rule('c', 1, 8, 'rwm'), why: 'randomness; it gives nothing of the host away' },
  { what: '/dev/urandom', rule: rule('c', 1, 9, 'rwm'), why: 'the same, non-blocking' },
  { what: '/dev/tty', rule: rule('c', 5, 0, 'rwm'), why: "a process's own controlling terminal (tty containers)" },
  { what: '/dev/console', rule: rule('c', 5, 1, 'rwm'), why: "containerd allows it; a container's console is its own pty" },
  { what: '/dev/ptmx', rule: rule('c', 5, 2, 'rwm'), why: 'new pseudo-terminals in the container’s own devpts' },
  { what: '/dev/pts/*', rule: rule('c', 136, '*', 'rwm'), why: 'the pseudo-terminals themselves (terminal, exec -t)' },
];

/** Linux's device numbers: 12 bits of major, 20 of minor (MINORBITS in linux/kdev_t.h). */
const MAJOR_MAX = 0xfff;
const MINOR_MAX = 0xfffff;

/** "mwr" → "rwm": one spelling per access set, as the kernel lists it. */
function normalAccess(access: string): string {
  return ['r', 'w', 'm'].filter((c) => access.includes(c)).join('');
}

function checkNode(node: DeviceAccess['nodes'][number]): DeviceRule {
  const what = `device ${node.type} ${node.major}:${node.minor}`;
  // Checked again although typed: the nodes may come back from a record on disk.
  const type: string = node.type;
  if (type !== 'c' && type !== 'b') throw new InvalidArgumentError(`${what}: type must be c or b`);
  if (!Number.isInteger(node.major) || node.major < 0 || node.major > MAJOR_MAX)
    throw new InvalidArgumentError(`${what}: major must be 0 to ${MAJOR_MAX}`);
  if (!Number.isInteger(node.minor) || node.minor < 0 || node.minor > MINOR_MAX)
    throw new InvalidArgumentError(`${what}: minor must be 0 to ${MINOR_MAX}`);
  if (!/^[rwm]{1,3}$/.test(node.access) || new Set(node.access).size !== node.access.length)
    throw new InvalidArgumentError(`${what}: access ${JSON.stringify(node.access)} must be made of r, w and m`);
  return rule(node.type, node.major, node.minor, normalAccess(node.access));
}

/**
 * Rules for the same device become one, with the union of their access: the v1 controller merges
 * them so, and the eBPF program must decide exactly as it does (an O_RDWR open of a device
 * allowed "r" by one rule and "w" by another is allowed).
 */
function merge(rules: readonly DeviceRule[]): DeviceRule[] {
  const byDevice = new Map<string, DeviceRule>();
  for (const r of rules) {
    const key = `${r.type} ${r.major}:${r.minor}`;
    const seen = byDevice.get(key);
    byDevice.set(key, seen === undefined ? r : { ...seen, access: normalAccess(seen.access + r.access) });
  }
  return [...byDevice.values()];
}

/** The policy for a container's access: checked (InvalidArgument) before any cgroup is made. */
export function devicePolicy(access: DeviceAccess): DevicePolicy {
  if (access.privileged) return { kind: 'all' };
  return { kind: 'allowlist', rules: merge([...DEFAULT_DEVICES.map((d) => d.rule), ...access.nodes.map(checkNode)]) };
}

/** A rule as the v1 controller writes and lists it: "c 136:* rwm". */
export function ruleString(r: DeviceRule): string {
  return `${r.type} ${r.major}:${r.minor} ${r.access}`;
}

/**
 * The v1 writes, in order. `devices.deny a` empties the cgroup's list and makes "deny" its
 * default; each `devices.allow` write then adds one rule (the kernel takes one rule per write). A
 * child may never get more than its parent, so a write the parent does not allow fails (EPERM)
 * instead of widening anything. Allow-all is `devices.allow a`.
 */
export function v1DeviceWrites(policy: DevicePolicy): { file: string; value: string }[] {
  if (policy.kind === 'all') return [{ file: 'devices.allow', value: 'a' }];
  return [{ file: 'devices.deny', value: 'a' }, ...policy.rules.map((r) => ({ file: 'devices.allow', value: ruleString(r) }))];
}

/** Writes a policy to a cgroup's v1 devices files, strictly in order (tree.apply would reorder refused writes). */
export async function writeV1Devices(tree: CgroupTree, cgroup: string, policy: DevicePolicy): Promise<void> {
  for (const w of v1DeviceWrites(policy)) await tree.write(cgroup, w.file, w.value);
}

/** The policy a v1 `devices.list` shows: "a *:* rwm" for allow-all, else one line per rule. */
export function parseDevicesList(text: string): DevicePolicy {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.includes('a *:* rwm')) return { kind: 'all' };
  return {
    kind: 'allowlist',
    rules: lines.map((line) => {
      const match = /^([cb]) (\d+|\*):(\d+|\*) ([rwm]+)$/.exec(line);
      if (match === null) throw new UnavailableError(`unexpected line ${JSON.stringify(line)} in devices.list`);
      const number = (s: string | undefined) => (s === '*' || s === undefined ? '*' : Number(s));
      return rule(match[1] as 'c' | 'b', number(match[2]), number(match[3]), match[4] ?? '');
    }),
  };
}

/** Whether two policies allow the same: the same rules in any order. */
export function samePolicy(a: DevicePolicy, b: DevicePolicy): boolean {
  if (a.kind === 'all' || b.kind === 'all') return a.kind === b.kind;
  const key = (p: { rules: readonly DeviceRule[] }) => merge(p.rules).map(ruleString).sort().join('\n');
  return key(a) === key(b);
}

/**
 * Checks a v1 cgroup's `devices.list` against the policy: for a cgroup whose files someone else
 * wrote (systemd applies DeviceAllow= on v1 best-effort, logging a write it could not make at
 * debug level), so that a container never starts with an allowlist wider or narrower than asked.
 */
export async function checkV1Devices(tree: CgroupTree, cgroup: string, policy: DevicePolicy): Promise<void> {
  const list = await tree.read(cgroup, 'devices.list');
  if (list === undefined) throw new UnavailableError(`cgroup "${cgroup}" has no devices.list to check its device allowlist`);
  if (!samePolicy(parseDevicesList(list), policy)) {
    throw new UnavailableError(
      `the device allowlist of cgroup "${cgroup}" is not the one asked for: devices.list has ` +
        JSON.stringify(list.trim().split('\n')),
    );
  }
}
