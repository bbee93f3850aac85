import {
  ListPodSandboxStatsResponse,
  PodSandboxStats,
  PodSandboxStatsResponse,
  type ListPodSandboxStatsRequest,
  type PodSandboxStatsRequest,
} from '../generated/api.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { statsCollectorOf } from './container-stats-collector.js';
import type { Runtime } from './runtime.js';
import { cpuAndMemory, toContainerStats } from './container-stats.js';

/** A pod's stats: its cgroup (all its containers and pause), its netns's interfaces, its containers. */
async function podStats(runtime: Runtime, sandbox: Sandbox): Promise<PodSandboxStats> {
  const { cgroup, usageNanoCores, interfaces } = await statsCollectorOf(runtime).pod(sandbox);
  const usage = interfaces.map((i) => ({
    name: i.name,
    rxBytes: { value: i.rxBytes },
    rxErrors: { value: i.rxErrors },
    txBytes: { value: i.txBytes },
    txErrors: { value: i.txErrors },
  }));
  const containers = await Promise.all(
    runtime.containers.list({ sandboxId: sandbox.id, state: 'running' }).map((c) => toContainerStats(runtime, c)),
  );
  return PodSandboxStats.create({
    attributes: {
      id: sandbox.id,
      metadata: sandbox.config.metadata,
      labels: sandbox.config.labels,
      annotations: sandbox.config.annotations,
    },
    linux: {
      ...cpuAndMemory(cgroup, usageNanoCores),
      network: { timestamp: cgroup.timestamp, defaultInterface: usage.find((i) => i.name === 'eth0'), interfaces: usage },
      process: { timestamp: cgroup.timestamp, processCount: { value: BigInt(cgroup.processes) } },
      containers,
    },
  });
}

/** PodSandboxStats: one pod's CPU, memory, network and process count, from the live system. */
export async function podSandboxStats(runtime: Runtime, request: PodSandboxStatsRequest): Promise<PodSandboxStatsResponse> {
  const sandbox = await runtime.sandboxes.get(request.podSandboxId);
  return PodSandboxStatsResponse.create({ stats: await podStats(runtime, sandbox) });
}

/** ListPodSandboxStats: the stats of the ready pods matching the filter. */
export async function listPodSandboxStats(
  runtime: Runtime,
  request: ListPodSandboxStatsRequest,
): Promise<ListPodSandboxStatsResponse> {
  const filter = request.filter;
  const unfiltered = (filter?.id ?? '') === '' && Object.keys(filter?.labelSelector ?? {}).length === 0;
  const sandboxes = await runtime.sandboxes.list({
    id: filter?.id ?? '',
    state: 'ready',
    labelSelector: filter?.labelSelector ?? {},
  });
  // The kubelet's unfiltered call names every ready pod: the CPU samples of the others
  // (removed, or stopped for good) are forgotten.
  if (unfiltered) statsCollectorOf(runtime).retainPods(sandboxes.map((s) => s.id));
  return ListPodSandboxStatsResponse.create({ stats: await Promise.all(sandboxes.map((sandbox) => podStats(runtime, sandbox))) });
}
