import {
  ContainerStats,
  ContainerStatsResponse,
  FilesystemUsage,
  ListContainerStatsResponse,
  type ContainerStatsRequest,
  type ListContainerStatsRequest,
} from '../generated/api.js';
import type { CgroupStats } from '../cgroups/stats.js';
import type { Container } from '../containers/container.js';
import type { WritableLayerUsage } from '../stats/collector.js';
import { nowNanos } from '../time.js';
import { statsCollectorOf } from './container-stats-collector.js';
import type { Runtime } from './runtime.js';

/**
 * The CRI's CPU and memory usage from a cgroup's stats (pods and containers alike).
 * usage_nano_cores is left unset on a first reading (see src/stats/cpu-rate.ts).
 */
export function cpuAndMemory(stats: CgroupStats, usageNanoCores: bigint | undefined): Pick<ContainerStats, 'cpu' | 'memory'> {
  return {
    cpu: {
      timestamp: stats.timestamp,
      usageCoreNanoSeconds: { value: stats.cpuUsageNanos },
      usageNanoCores: usageNanoCores === undefined ? undefined : { value: usageNanoCores },
      psi: undefined,
    },
    memory: {
      timestamp: stats.timestamp,
      workingSetBytes: { value: stats.workingSetBytes },
      availableBytes: undefined,
      usageBytes: { value: stats.memoryUsageBytes },
      rssBytes: { value: stats.rssBytes },
      pageFaults: { value: stats.pageFaults },
      majorPageFaults: { value: stats.majorPageFaults },
      psi: undefined,
    },
  };
}

/**
 * writable_layer: the kubelet's `rootfs` stats of the container, which it evicts on. Until the
 * first measurement is done, the filesystem is named and the sizes are left unset (unknown, not 0).
 */
function writableLayer(layer: WritableLayerUsage): FilesystemUsage {
  return FilesystemUsage.create({
    timestamp: layer.usage?.timestamp ?? nowNanos(),
    fsId: { mountpoint: layer.mountpoint },
    usedBytes: layer.usage === undefined ? undefined : { value: layer.usage.bytes },
    inodesUsed: layer.usage === undefined ? undefined : { value: layer.usage.inodes },
  });
}

/** A container's CPU, memory and writable layer (zero CPU and memory for one that has no cgroup yet). */
export async function toContainerStats(runtime: Runtime, container: Container): Promise<ContainerStats> {
  const attributes = {
    id: container.id,
    metadata: container.config.metadata,
    labels: container.config.labels,
    annotations: container.config.annotations,
  };
  const usage = await statsCollectorOf(runtime).container(container);
  const timestamp = nowNanos();
  return ContainerStats.create({
    attributes,
    ...(usage.cgroup === undefined
      ? { cpu: { timestamp }, memory: { timestamp } }
      : cpuAndMemory(usage.cgroup, usage.usageNanoCores)),
    writableLayer: writableLayer(usage.writableLayer),
  });
}

/** ContainerStats: one container's CPU, memory and writable layer use. */
export async function containerStats(runtime: Runtime, request: ContainerStatsRequest): Promise<ContainerStatsResponse> {
  const container = await runtime.containers.get(request.containerId);
  return ContainerStatsResponse.create({ stats: await toContainerStats(runtime, container) });
}

/** ListContainerStats: the stats of the running containers matching the filter. */
export async function listContainerStats(
  runtime: Runtime,
  request: ListContainerStatsRequest,
): Promise<ListContainerStatsResponse> {
  const filter = request.filter;
  const containers = runtime.containers.list({
    id: filter?.id ?? '',
    sandboxId: filter?.podSandboxId ?? '',
    state: 'running',
    labelSelector: filter?.labelSelector ?? {},
  });
  return ListContainerStatsResponse.create({ stats: await Promise.all(containers.map((c) => toContainerStats(runtime, c))) });
}
