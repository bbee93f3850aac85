import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriver } from '../cgroups/driver.js';
import type { CgroupStats } from '../cgroups/stats.js';
import type { Container } from '../containers/container.js';
import type { ContainerEvents } from '../events.js';
import { netDevOf, type InterfaceCounters } from '../os/net-dev.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { CpuRates } from './cpu-rate.js';
import { filesystemOf, type FilesystemInfo } from './filesystem.js';
import { openFiles, type OpenFiles } from './process-files.js';
import { measureTree, WritableLayers, type LayerUsage, type WritableLayerOptions } from './writable-layer.js';

/**
 * One reading of a container or pod, shared by the stats RPCs (ContainerStats, PodSandboxStats and
 * their lists) and the cAdvisor-style metrics (ListPodSandboxMetrics): each reads its cgroup once
 * here and only converts. It also holds what must outlive a call: the previous CPU sample of each
 * container and pod (usage_nano_cores) and the writable layers' measurements, forgotten when the
 * container is removed (its `deleted` event) or the pod is no longer listed.
 */

export interface ContainerUsage {
  /** Undefined for a container that has no cgroup yet (created, never started). */
  cgroup: CgroupStats | undefined;
  /** CPU use in nanocores since the previous reading; undefined on the first. */
  usageNanoCores: bigint | undefined;
  writableLayer: WritableLayerUsage;
}

export interface WritableLayerUsage {
  /** The filesystem it is on, named as ImageFsInfo names it (FilesystemIdentifier.mountpoint). */
  mountpoint: string;
  /** Undefined until a first measurement is done. */
  usage: LayerUsage | undefined;
}

export interface PodUsage {
  cgroup: CgroupStats;
  usageNanoCores: bigint | undefined;
  /** The pod network namespace's interfaces but loopback; none for a pod that is not ready. */
  interfaces: InterfaceCounters[];
}

/** What the metrics add to a container's reading: its layer's filesystem and its open files. */
export interface ContainerDetails {
  cgroup: CgroupStats | undefined;
  writableLayer: WritableLayerUsage;
  filesystem: FilesystemInfo;
  openFiles: OpenFiles;
}

export interface CollectorDeps {
  cgroups: Pick<CgroupDriver, 'stats' | 'pids'>;
  events: ContainerEvents;
  /** <root_dir>/containers: where each container's folder, and so its writable layer, is. */
  containersDir: string;
  /** The image store's root: the mountpoint ImageFsInfo reports. */
  imageFsMountpoint: string;
  layers?: WritableLayerOptions;
}

export class StatsCollector {
  private readonly containerCpu = new CpuRates();
  private readonly podCpu = new CpuRates();
  private readonly layers: WritableLayers;
  private mountpoint: Promise<string> | undefined;
  private filesystem: { at: number; info: Promise<FilesystemInfo> } | undefined;

  constructor(private readonly deps: CollectorDeps) {
    this.layers = new WritableLayers(deps.layers);
    deps.events.subscribe((event) => {
      if (event.type !== 'deleted') return;
      this.containerCpu.forget(event.containerId);
      this.layers.forget(event.containerId);
    });
  }

  /** A container's cgroup and writable layer, and its CPU rate since the previous call. */
  async container(container: Container): Promise<ContainerUsage> {
    const [cgroup, layer] = await Promise.all([this.readContainer(container), this.writableLayer(container)]);
    const usageNanoCores =
      cgroup === undefined ? undefined : this.containerCpu.sample(container.id, cgroup.cpuUsageNanos, cgroup.timestamp);
    return { cgroup, usageNanoCores, writableLayer: layer };
  }

  /** A container's cgroup alone, undefined before it has one; no CPU sample is taken (metrics). */
  readContainer(container: Container): Promise<CgroupStats | undefined> {
    return container.cgroup === '' ? Promise.resolve(undefined) : this.deps.cgroups.stats(container.cgroup);
  }

  /** A container's cgroup, writable layer, filesystem and open files, for the metrics; no CPU sample is taken. */
  async containerDetails(container: Container): Promise<ContainerDetails> {
    const [cgroup, writableLayer, filesystem, pids] = await Promise.all([
      this.readContainer(container),
      this.writableLayer(container),
      this.layerFilesystem(),
      container.cgroup === '' ? [] : this.deps.cgroups.pids(container.cgroup),
    ]);
    return { cgroup, writableLayer, filesystem, openFiles: await openFiles(pids) };
  }

  /** A pod's cgroup (its containers and pause together), its network counters and its CPU rate since the previous call. */
  async pod(sandbox: Sandbox): Promise<PodUsage> {
    const { cgroup, interfaces } = await this.readPod(sandbox);
    return { cgroup, interfaces, usageNanoCores: this.podCpu.sample(sandbox.id, cgroup.cpuUsageNanos, cgroup.timestamp) };
  }

  /** A pod's cgroup and network counters; no CPU sample is taken (metrics). */
  async readPod(sandbox: Sandbox): Promise<Omit<PodUsage, 'usageNanoCores'>> {
    const ready = sandbox.state === 'ready' && sandbox.namespaces.net !== undefined;
    const [cgroup, interfaces] = await Promise.all([
      this.deps.cgroups.stats(sandbox.cgroup.pod),
      // /proc/<pause>/net/dev shows the pod's netns; a pause gone meanwhile has no counters.
      ready && sandbox.pause !== undefined ? netDevOf(sandbox.pause.pid).catch(() => []) : [],
    ]);
    return { cgroup, interfaces: interfaces.filter((i) => i.name !== 'lo') };
  }

  /** Keeps the CPU samples of these pods only: an unfiltered listing names every pod still there. */
  retainPods(ids: readonly string[]): void {
    this.podCpu.retain(new Set(ids));
  }

  /** How many containers and pods are remembered (tests check nothing is left behind). */
  get remembered(): { containerCpu: number; podCpu: number; layers: number } {
    return { containerCpu: this.containerCpu.size, podCpu: this.podCpu.size, layers: this.layers.size };
  }

  private async writableLayer(container: Container): Promise<WritableLayerUsage> {
    const [mountpoint, usage] = await Promise.all([
      this.layerMountpoint(),
      this.layers.usage(container.id, async (signal) => {
        // ImageStore.createRootfs: overlayfs puts the writable layer in <dir>/upper; without
        // overlayfs the rootfs itself is the container's own copy, all of it written for it.
        const upper = await measureTree(join(container.dir, 'upper'), signal);
        return upper ?? (await measureTree(container.rootfs, signal));
      }),
    ]);
    return { mountpoint, usage };
  }

  /** statfs of the containers' filesystem, read at most once a second for all the containers of a scrape. */
  private layerFilesystem(): Promise<FilesystemInfo> {
    const now = Date.now();
    if (this.filesystem === undefined || now - this.filesystem.at > 1_000) {
      const info = filesystemOf(this.deps.containersDir);
      // A failed read is not kept: the next call tries again.
      void info.catch(() => (this.filesystem = undefined));
      this.filesystem = { at: now, info };
    }
    return this.filesystem.info;
  }

  /**
   * The filesystem the writable layers are on, named so that the kubelet joins it with ImageFsInfo:
   * the image store's mountpoint when the containers' folder is on the same device (the usual
   * case, both under root_dir; containerd names its snapshotter root for both), else the
   * containers' folder itself, so the kubelet's cAdvisor looks up the right device.
   */
  private layerMountpoint(): Promise<string> {
    const known = this.mountpoint;
    if (known !== undefined) return known;
    const found = (async () => {
      const [images, containers] = await Promise.all([
        stat(this.deps.imageFsMountpoint).catch(() => undefined),
        stat(this.deps.containersDir).catch(() => undefined),
      ]);
      // Asked again next time while either folder is still to be made.
      if (images === undefined || containers === undefined) this.mountpoint = undefined;
      return images === undefined || containers === undefined || images.dev === containers.dev
        ? this.deps.imageFsMountpoint
        : this.deps.containersDir;
    })();
    this.mountpoint = found;
    return found;
  }
}
