import {
  ListPodSandboxStatsResponse,
  PodSandboxStats,
  PodSandboxStatsResponse,
  type ListPodSandboxStatsRequest,
  type PodSandboxStatsRequest,
} from '../generated/api.js';
import { netDevOf } from '../os/net-dev.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { Runtime } from './runtime.js';
import { cpuAndMemory, toContainerStats } from './container-stats.js';

/** A pod's stats: its cgroup (all its containers and pause), its netns's interfaces, its containers. */
async function podStats(runtime: Runtime, sandbox: Sandbox): Promise<PodSandboxStats> {
  const stats = await runtime.cgroups.stats(sandbox.cgroup.pod);
  const interfaces =
    sandbox.state === 'ready' && sandbox.pause !== undefined && sandbox.namespaces.net !== undefined
      ? await netDevOf(sandbox.pause.pid).catch(() => [])
      : [];
  const usage = interfaces
    .filter((i) => i.name !== 'lo')
    .map((i) => ({
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
      ...cpuAndMemory(stats),
      network: { timestamp: stats.timestamp, defaultInterface: usage.find((i) => i.name === 'eth0'), interfaces: usage },
      process: { timestamp: stats.timestamp, processCount: { value: BigInt(stats.processes) } },
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
  const sandboxes = await runtime.sandboxes.list({
    id: filter?.id ?? '',
    state: 'ready',
    labelSelector: filter?.labelSelector ?? {},
  });
  return ListPodSandboxStatsResponse.create({ stats: await Promise.all(sandboxes.map((sandbox) => podStats(runtime, sandbox))) });
}
