import { nowNanos } from '../time.js';
import {
  ContainerStats,
  ContainerStatsResponse,
  ListContainerStatsResponse,
  type ContainerStatsRequest,
  type ListContainerStatsRequest,
} from '../generated/api.js';
import type { CgroupStats } from '../cgroups/stats.js';
import type { Container } from '../containers/container.js';
import type { Runtime } from './runtime.js';

/** The CRI's CPU and memory usage from a cgroup's stats (pods and containers alike). */
export function cpuAndMemory(stats: CgroupStats): Pick<ContainerStats, 'cpu' | 'memory'> {
  return {
    cpu: {
      timestamp: stats.timestamp,
      usageCoreNanoSeconds: { value: stats.cpuUsageNanos },
      usageNanoCores: undefined,
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

/** A container's CPU and memory, read from its cgroup (zeros for one that has none yet). */
export async function toContainerStats(runtime: Runtime, container: Container): Promise<ContainerStats> {
  const attributes = {
    id: container.id,
    metadata: container.config.metadata,
    labels: container.config.labels,
    annotations: container.config.annotations,
  };
  const timestamp = nowNanos();
  if (container.cgroup === '') return ContainerStats.create({ attributes, cpu: { timestamp }, memory: { timestamp } });
  const stats = await runtime.cgroups.stats(container.cgroup);
  return ContainerStats.create({ attributes, ...cpuAndMemory(stats) });
}

/** ContainerStats: one container's CPU and memory use, from its cgroup. */
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
