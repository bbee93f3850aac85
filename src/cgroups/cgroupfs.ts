import { UnavailableError } from '../errors.js';
import type { LinuxContainerResources } from '../generated/api.js';
import { log } from '../log.js';
import { attachDeviceFilter } from '../os/device-filter.js';
import { Rollback } from '../rollback.js';
import type { CgroupTree } from './cgroup-files.js';
import { deviceProgram } from './device-program.js';
import { DEFAULT_DEVICE_ACCESS, devicePolicy, writeV1Devices, type DeviceAccess, type DevicePolicy } from './devices.js';
import type { CgroupDriver, DeviceFilterAttacher, PodCgroupSpec } from './driver.js';
import { cgroupfsContainerPath, cgroupfsPodPath, podKey } from './names.js';
import { podResources, resourceWrites } from './resources.js';
import { readOomKilled, readStats, type CgroupStats } from './stats.js';

/**
 * The cgroupfs driver: icetray writes the cgroup files itself, on v1 in every mounted hierarchy
 * and on v2 in the one tree, under a root that tests point at a folder of their own.
 */
export class CgroupfsDriver implements CgroupDriver {
  readonly name = 'cgroupfs';

  constructor(
    private readonly tree: CgroupTree,
    /** Attaches a device program to a v2 folder: nsexec device-filter, or a test's recorder. */
    private readonly attachFilter: DeviceFilterAttacher = attachDeviceFilter,
  ) {}

  get version(): 1 | 2 {
    return this.tree.version;
  }

  async createPod(spec: PodCgroupSpec): Promise<string> {
    const path = cgroupfsPodPath(podKey(spec), spec.cgroupParent);
    await this.tree.create(path);
    const resources = spec.cgroupParent === '' ? podResources(spec.resources, spec.overhead) : undefined;
    if (resources !== undefined) await this.tree.apply(path, resourceWrites(resources, this.version));
    return path;
  }

  async createContainer(
    podCgroup: string,
    id: string,
    resources?: LinuxContainerResources,
    devices: DeviceAccess = DEFAULT_DEVICE_ACCESS,
  ): Promise<string> {
    const path = cgroupfsContainerPath(podCgroup, id);
    // A malformed device is refused before anything is made.
    const policy = devicePolicy(devices);
    return Rollback.run(async (rollback) => {
      // Pushed first: a create that failed half-way may have made the folder in some hierarchies.
      rollback.push('remove the half-made cgroup', () => this.tree.remove(path));
      await this.tree.create(path);
      if (resources !== undefined) await this.tree.apply(path, resourceWrites(resources, this.version));
      await this.restrictDevices(path, policy);
      return path;
    });
  }

  /**
   * The device allowlist, in place before any process joins: with every mechanism the host has,
   * so that on a hybrid host neither the v1 controller nor the v2 program is the only guard.
   */
  private async restrictDevices(cgroup: string, policy: DevicePolicy): Promise<void> {
    const v1 = this.tree.hasController('devices');
    const v2Dir = this.tree.v2Dir(cgroup);
    if (policy.kind === 'allowlist' && !v1 && v2Dir === undefined) {
      throw new UnavailableError(
        `cannot restrict the devices of cgroup "${cgroup}": neither the v1 devices controller nor a cgroup v2 hierarchy is mounted`,
      );
    }
    if (v1) await writeV1Devices(this.tree, cgroup, policy);
    // Allow-all needs no program: with none attached, the kernel asks only the ancestors' programs.
    if (v2Dir !== undefined && policy.kind === 'allowlist') await this.attachFilter(v2Dir, deviceProgram(policy.rules));
  }

  addProcess(cgroup: string, pid: number): Promise<void> {
    return this.tree.addProcess(cgroup, pid);
  }

  update(cgroup: string, resources: LinuxContainerResources): Promise<void> {
    return this.tree.apply(cgroup, resourceWrites(resources, this.version));
  }

  stats(cgroup: string): Promise<CgroupStats> {
    return readStats(this.tree, cgroup);
  }

  pids(cgroup: string): Promise<number[]> {
    return this.tree.pids(cgroup);
  }

  oomKilled(cgroup: string): Promise<boolean> {
    return readOomKilled(this.tree, cgroup);
  }

  async remove(cgroup: string): Promise<void> {
    const children = await this.tree.children(cgroup);
    if (children.length > 0) {
      log.debug({ cgroup, children }, 'cgroup kept: it still has child cgroups');
      return;
    }
    await this.tree.remove(cgroup);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
