import type { LinuxContainerResources } from '../generated/api.js';
import { log } from '../log.js';
import type { CgroupTree } from './cgroup-files.js';
import type { CgroupDriver, PodCgroupSpec } from './driver.js';
import { cgroupfsContainerPath, cgroupfsPodPath, podKey } from './names.js';
import { podResources, resourceWrites } from './resources.js';
import { readOomKilled, readStats, type CgroupStats } from './stats.js';

/**
 * The cgroupfs driver: icetray writes the cgroup files itself, on v1 in every mounted hierarchy
 * and on v2 in the one tree, under a root that tests point at a folder of their own.
 */
export class CgroupfsDriver implements CgroupDriver {
  readonly name = 'cgroupfs';

  constructor(private readonly tree: CgroupTree) {}

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

  async createContainer(podCgroup: string, id: string, resources?: LinuxContainerResources): Promise<string> {
    const path = cgroupfsContainerPath(podCgroup, id);
    await this.tree.create(path);
    if (resources !== undefined) {
      try {
        await this.tree.apply(path, resourceWrites(resources, this.version));
      } catch (err) {
        await this.tree
          .remove(path)
          .catch((undo: unknown) => log.error({ err: undo, cgroup: path }, 'failed to remove a half-made cgroup'));
        throw err;
      }
    }
    return path;
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
