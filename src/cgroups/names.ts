import { posix } from 'node:path';
import type { CgroupDriverName } from '../config/config.js';
import { InvalidArgumentError } from '../errors.js';

/**
 * The kubelet's cgroup naming rules, written once for both drivers (pkg/kubelet/cm/cgroup_manager_linux.go,
 * pod_container_manager_linux.go).
 *
 * Every name a driver hands out is a path from the root of a hierarchy:
 *   cgroupfs  /kubepods/burstable/pod<uid>/<container-id>
 *   systemd   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/icetray-<id>.scope
 * For systemd the last component is the unit's name, so one string is both the unit and the path.
 */

/**
 * The QoS class icetray assumes when the sandbox names no cgroup_parent (critest, crictl): burstable,
 * the class the kubelet gives any pod that sets some requests or limits, and whose level places no
 * limit of its own above the pod.
 */
export const DEFAULT_QOS = 'burstable';

/** The kubelet's node-level cgroup for pods (its `--cgroup-root` is "/" by default, then "kubepods"). */
const KUBEPODS = 'kubepods';

/** A pod uid becomes a path component: '/' or a leading '.' would escape it or hide it. */
function checkUid(uid: string): void {
  if (uid === '' || uid.includes('/') || uid.startsWith('.')) {
    throw new InvalidArgumentError(`pod uid ${JSON.stringify(uid)} cannot name a cgroup`);
  }
}

/** The same for a container or sandbox id. */
function checkId(id: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) {
    throw new InvalidArgumentError(`id ${JSON.stringify(id)} cannot name a cgroup`);
  }
}

/** The pod's name in cgroup paths: its uid, or the sandbox id for a pod without one (a bare crictl config). */
export function podKey(spec: { podUid: string; sandboxId: string }): string {
  return spec.podUid === '' ? spec.sandboxId : spec.podUid;
}

function isSlice(name: string): boolean {
  return posix.basename(name).endsWith('.slice');
}

/**
 * cgroupfs: the pod's cgroup. The kubelet passes its pod cgroup as cgroup_parent and containers go
 * straight inside it, as containerd and CRI-O do; '' gets the kubelet's layout for a burstable pod.
 */
export function cgroupfsPodPath(podUid: string, cgroupParent: string): string {
  if (cgroupParent === '') {
    checkUid(podUid);
    return `/${KUBEPODS}/${DEFAULT_QOS}/pod${podUid}`;
  }
  if (isSlice(cgroupParent)) {
    // The mismatch users hit most (kubernetes#43805): a kubelet with cgroupDriver systemd.
    throw new InvalidArgumentError(
      `cgroup_driver is "cgroupfs" but the pod's cgroup_parent ${JSON.stringify(cgroupParent)} is a systemd slice: ` +
        'use the same cgroup driver in the kubelet (cgroupDriver) and in icetray (cgroup_driver)',
    );
  }
  return normalizePath(cgroupParent);
}

/** cgroupfs: a container's cgroup, named by its id inside the pod's (the kubelet's expected layout). */
export function cgroupfsContainerPath(podCgroup: string, id: string): string {
  checkId(id);
  return posix.join(normalizePath(podCgroup), id);
}

/** An absolute, normalised cgroup path; ".." is refused rather than resolved (it can only be a mistake or an attack). */
export function normalizePath(path: string): string {
  if (path.split('/').includes('..')) throw new InvalidArgumentError(`cgroup path ${JSON.stringify(path)} has a ".." in it`);
  const normal = posix.normalize(`/${path}`);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

/** systemd unit names escape '-' in a pod uid to '_' (the kubelet's escapeSystemdCgroupName): '-' means nesting. */
export function escapeSystemd(part: string): string {
  return part.replaceAll('-', '_');
}

/**
 * systemd: the pod's slice, as a full path. The kubelet passes its pod slice, either as the unit name
 * ("kubepods-burstable-pod<uid>.slice") or as the expanded path; critest passes "/test.slice". Only the
 * last component counts, as in containerd and CRI-O; it must be a slice.
 */
export function systemdPodPath(podUid: string, cgroupParent: string): string {
  if (cgroupParent === '') {
    checkUid(podUid);
    return expandSlice(`${KUBEPODS}-${DEFAULT_QOS}-pod${escapeSystemd(podUid)}.slice`);
  }
  if (!isSlice(cgroupParent)) {
    // runc says the same in its words: 'expected cgroupsPath to be of format "slice:prefix:name"'.
    throw new InvalidArgumentError(
      `cgroup_driver is "systemd" but the pod's cgroup_parent ${JSON.stringify(cgroupParent)} is not a systemd slice: ` +
        'use the same cgroup driver in the kubelet (cgroupDriver) and in icetray (cgroup_driver)',
    );
  }
  return expandSlice(posix.basename(cgroupParent));
}

/** systemd: a container's scope, icetray's counterpart of containerd's cri-containerd-<id>.scope. */
export function scopeName(id: string): string {
  checkId(id);
  return `icetray-${id}.scope`;
}

/** systemd: the path of a container's scope inside its pod's slice. */
export function systemdContainerPath(podSlicePath: string, id: string): string {
  return posix.join(podSlicePath, scopeName(id));
}

/** The unit a systemd cgroup path names: its last component. */
export function unitOf(path: string): string {
  return posix.basename(path);
}

/**
 * Where systemd puts a slice: each '-' is a level, so "a-b-c.slice" lives at
 * /a.slice/a-b.slice/a-b-c.slice, and "-.slice" is the root (systemd.slice(5)).
 */
export function expandSlice(slice: string): string {
  if (slice === '-.slice') return '/';
  const name = slice.slice(0, -'.slice'.length);
  if (
    !slice.endsWith('.slice') ||
    name === '' ||
    name.includes('/') ||
    name.startsWith('-') ||
    name.endsWith('-') ||
    name.includes('--')
  ) {
    throw new InvalidArgumentError(`${JSON.stringify(slice)} is not a valid systemd slice name`);
  }
  const parts = name.split('-');
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join('-')}.slice`).join('');
}

/**
 * The pod's cgroup under a driver's rules, known before anything is made: a pod records it
 * before it creates it, so that an icetray killed half-way finds it again.
 */
export function podCgroupPath(
  driver: CgroupDriverName,
  spec: { podUid: string; sandboxId: string; cgroupParent: string },
): string {
  const key = podKey(spec);
  return driver === 'systemd' ? systemdPodPath(key, spec.cgroupParent) : cgroupfsPodPath(key, spec.cgroupParent);
}

/** A container's (or pause's) cgroup inside its pod's, by the same rules. */
export function containerCgroupPath(driver: CgroupDriverName, podCgroup: string, id: string): string {
  return driver === 'systemd' ? systemdContainerPath(podCgroup, id) : cgroupfsContainerPath(podCgroup, id);
}
