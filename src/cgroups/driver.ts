import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriverName } from '../config/config.js';
import { FailedPreconditionError } from '../errors.js';
import type { LinuxContainerResources } from '../generated/api.js';
import { CgroupTree } from './cgroup-files.js';
import { CgroupfsDriver } from './cgroupfs.js';
import type { DeviceAccess } from './devices.js';
import type { CgroupStats } from './stats.js';
import { SystemdDriver } from './systemd.js';
import { connectSystemd } from './systemd-bus.js';

/** What a pod's cgroup is made from: the sandbox config's linux section. */
export interface PodCgroupSpec {
  podUid: string;
  sandboxId: string;
  /** LinuxPodSandboxConfig.cgroup_parent: the kubelet's pod cgroup, critest's "/test.slice", or ''. */
  cgroupParent: string;
  /** LinuxPodSandboxConfig.resources: the sum of the containers' resources. */
  resources?: LinuxContainerResources | undefined;
  /** LinuxPodSandboxConfig.overhead: the RuntimeClass's overhead. */
  overhead?: LinuxContainerResources | undefined;
}

/**
 * Pod and container cgroups, behind one small interface chosen once at start (runc's cgroup
 * Manager). Cgroups are named by the string createPod/createContainer return: a path from the root
 * of every hierarchy (cgroupfs "/kubepods/burstable/pod<uid>/<id>"; systemd
 * "/kubepods.slice/…/kubepods-burstable-pod<uid>.slice/icetray-<id>.scope", whose last component is
 * the unit). Callers store it and pass it back.
 */
export interface CgroupDriver {
  readonly name: CgroupDriverName;
  readonly version: 1 | 2;
  /**
   * The pod's cgroup: cgroup_parent as given, or the kubelet's burstable layout when it is ''. It is
   * sized from the spec's resources plus overhead only when icetray chose it: a kubelet-named one
   * the kubelet has sized. A cgroup_parent of the other driver's kind is an InvalidArgumentError.
   */
  createPod(spec: PodCgroupSpec): Promise<string>;
  /**
   * A container's (or the pause's, with the sandbox id) cgroup inside its pod's; processes join with
   * addProcess. `devices` is what its processes may open or mknod (devices.ts): left out, the
   * default set, never "all". It is in force before the first process runs: cgroupfs sets it
   * here, systemd when addProcess starts the scope. A malformed device is an InvalidArgumentError.
   */
  createContainer(podCgroup: string, id: string, resources?: LinuxContainerResources, devices?: DeviceAccess): Promise<string>;
  /** Places a process, typically one blocked before exec, so it never runs user code outside the cgroup. */
  addProcess(cgroup: string, pid: number): Promise<void>;
  /** New limits on a cgroup (UpdateContainerResources); unspecified (zero) values are left as they are. */
  update(cgroup: string, resources: LinuxContainerResources): Promise<void>;
  stats(cgroup: string): Promise<CgroupStats>;
  pids(cgroup: string): Promise<number[]>;
  /** Whether the kernel's OOM killer killed a process of the cgroup. */
  oomKilled(cgroup: string): Promise<boolean>;
  /**
   * Deletes the cgroup (and for systemd its unit) once its processes are gone; one already gone is
   * no error. A cgroup with child cgroups left is kept: a pod cgroup that another sandbox of the same
   * pod still uses (the kubelet re-creates its pod cgroup before every RunPodSandbox anyway).
   */
  remove(cgroup: string): Promise<void>;
  /** Releases what the driver holds (the D-Bus connection). */
  close(): Promise<void>;
}

/** Attaches a cgroup v2 device program (device-program.ts) to a cgroup folder: src/os/device-filter.ts. */
export type DeviceFilterAttacher = (cgroupDir: string, program: Uint8Array) => Promise<void>;

export interface DriverOptions {
  name: CgroupDriverName;
  /** The cgroup mount root; default /sys/fs/cgroup under systemdRoot. Tests pass a folder of their own. */
  root?: string;
  /**
   * systemd only: the root of the filesystem systemd runs in, where its /run/systemd/system and
   * /run/dbus/system_bus_socket are. "/" on a systemd host; tests pass /proc/<pid>/root of a systemd
   * they booted in namespaces.
   */
  systemdRoot?: string;
  /** systemd only: systemd's PID as icetray sees it (1 on a systemd host), to give it PIDs it can see. */
  systemdPid?: number;
  /** How device programs are attached; default nsexec device-filter. Tests on a fake tree pass a recorder. */
  deviceFilter?: DeviceFilterAttacher;
}

/** Builds the configured driver, detecting the cgroup version; fails with the reason when it cannot work here. */
export async function createDriver(options: DriverOptions): Promise<CgroupDriver> {
  const systemdRoot = options.systemdRoot ?? '/';
  const tree = await CgroupTree.open(options.root ?? join(systemdRoot, 'sys/fs/cgroup'));
  if (options.name === 'cgroupfs') return new CgroupfsDriver(tree, options.deviceFilter);
  // sd_booted(3): systemd creates /run/systemd/system early at boot when it is PID 1.
  const booted = join(systemdRoot, 'run/systemd/system');
  try {
    await access(booted);
  } catch {
    throw new FailedPreconditionError(
      `cgroup_driver = "systemd" needs systemd as PID 1, and it is not (${booted} is absent): ` +
        'set cgroup_driver = "cgroupfs" in icetray and cgroupDriver: cgroupfs in the kubelet config',
    );
  }
  const manager = await connectSystemd(`unix:path=${join(systemdRoot, 'run/dbus/system_bus_socket')}`);
  return new SystemdDriver(manager, tree, options.systemdPid ?? 1, options.deviceFilter);
}
