import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { CriClient } from '../cli/cri-client.js';
import { explainContainer, type ContainerExplanation } from '../explain/container.js';
import { explainPod, type PodExplanation, type PodRecord } from '../explain/pod.js';
import { containerRecord, podRecord } from '../explain/records.js';
import { PodSandboxConfig, PodSandboxState, Protocol, type Container } from '../generated/api.js';
import { processStartTime } from '../os/proc-stat.js';

/**
 * The JSON view `icetray ui` draws: every pod as a tray (pause and the namespaces it holds) with
 * its containers as cubes, built from the CRI and from the live system through explain's code.
 */

export interface ContainerView {
  id: string;
  name: string;
  image: string;
  attempt: number;
  state: string;
  pid: number | null;
  /** Earlier attempts of this name in the pod that the kubelet replaced (a restart keeps the pod). */
  restarts: number;
  /** The container's namespaces against pause's, from /proc. */
  namespaces: ContainerExplanation['namespaces'];
  /** The limits as the kernel has them, and what the CRI's stats say is in use. */
  cgroup: ContainerExplanation['cgroup'];
  usage: { memoryBytes: string | null; cpuNanoCores: string | null };
}

export interface PodView {
  id: string;
  name: string;
  namespace: string;
  state: string;
  createdAt: string;
  ip: string;
  hostPorts: { hostPort: number; containerPort: number; protocol: string; hostIp: string }[];
  pause: { pid: number | null; alive: boolean };
  /** The namespaces pause holds (the tray), with their inodes. */
  namespaces: { kind: string; inode: number | null }[];
  labels: Record<string, string>;
  containers: ContainerView[];
}

export interface NodeView {
  node: string;
  pods: PodView[];
}

/** A pod as `icetray explain pod` and `explain container` see it, for the page's detail panel. */
export interface PodDetail {
  pod: PodExplanation;
  containers: ContainerExplanation[];
}

/** The newest attempt of each container name, and how many earlier ones it replaced. */
function newestAttempts(containers: Container[]): { container: Container; restarts: number }[] {
  const byName = new Map<string, Container[]>();
  for (const c of containers) {
    const name = c.metadata?.name ?? '';
    byName.set(name, [...(byName.get(name) ?? []), c]);
  }
  return [...byName.values()].map((attempts) => {
    attempts.sort((a, b) => (a.metadata?.attempt ?? 0) - (b.metadata?.attempt ?? 0) || Number(a.createdAt - b.createdAt));
    const newest = attempts[attempts.length - 1] as Container;
    return { container: newest, restarts: Math.max(attempts.length - 1, newest.metadata?.attempt ?? 0) };
  });
}

/** The host ports the pod asked for, from its config in icetray's record (CNI portmap set them up). */
async function hostPorts(podDir: string): Promise<PodView['hostPorts']> {
  const text = await readFile(join(podDir, 'sandbox.json'), 'utf8').catch(() => '');
  if (text === '') return [];
  const record = JSON.parse(text) as { config?: string };
  const config = PodSandboxConfig.decode(Buffer.from(record.config ?? '', 'base64'));
  return config.portMappings
    .filter((p) => p.hostPort > 0)
    .map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: Protocol[p.protocol], hostIp: p.hostIp }));
}

/**
 * Builds the node's view over the CRI. A pod's record (pause's pid, its namespaces, its folder)
 * is fixed for its life, so it is read once: a verbose PodSandboxStatus runs a CNI CHECK.
 */
export class NodeModel {
  private readonly records = new Map<string, PodRecord>();

  constructor(private readonly cri: CriClient) {}

  async view(): Promise<NodeView> {
    const cri = this.cri;
    const [pods, containers, stats] = await Promise.all([
      cri.runtime.listPodSandbox({}),
      cri.runtime.listContainers({}),
      cri.runtime.listContainerStats({}),
    ]);
    for (const id of this.records.keys()) if (!pods.items.some((p) => p.id === id)) this.records.delete(id);
    const usage = new Map(
      stats.stats.map((s) => [
        s.attributes?.id ?? '',
        {
          memoryBytes: s.memory?.workingSetBytes?.value.toString() ?? null,
          cpuNanoCores: s.cpu?.usageNanoCores?.value.toString() ?? null,
        },
      ]),
    );
    const views = await Promise.all(
      pods.items.map(async (sandbox): Promise<PodView | undefined> => {
        // A pod removed between the list and its status is simply not drawn.
        const record = this.records.get(sandbox.id) ?? (await podRecord(cri, sandbox.id).catch(() => undefined));
        if (record === undefined) return undefined;
        this.records.set(sandbox.id, record);
        const own = containers.containers.filter((c) => c.podSandboxId === sandbox.id);
        const cubes = await Promise.all(
          newestAttempts(own).map(async ({ container, restarts }): Promise<ContainerView | undefined> => {
            const explained = await containerRecord(cri, container.id, record).then(explainContainer, () => undefined);
            if (explained === undefined) return undefined;
            return {
              id: container.id,
              name: explained.name,
              image: container.image?.userSpecifiedImage || container.image?.image || container.imageRef,
              attempt: explained.attempt,
              state: explained.state,
              pid: explained.pid,
              restarts,
              namespaces: explained.namespaces,
              cgroup: explained.cgroup,
              usage: usage.get(container.id) ?? { memoryBytes: null, cpuNanoCores: null },
            };
          }),
        );
        const pid = record.info.pid;
        return {
          id: sandbox.id,
          name: sandbox.metadata?.name ?? '',
          namespace: sandbox.metadata?.namespace ?? '',
          state: PodSandboxState[sandbox.state],
          createdAt: sandbox.createdAt.toString(),
          ip: record.ip,
          hostPorts: await hostPorts(record.info.podDir),
          pause: { pid, alive: pid !== null && processStartTime(pid) !== undefined },
          namespaces: Object.entries(record.info.namespaces).map(([kind, ns]) => ({ kind, inode: ns.inode })),
          labels: sandbox.labels,
          containers: cubes.filter((c) => c !== undefined).sort((a, b) => a.name.localeCompare(b.name)),
        };
      }),
    );
    return {
      node: hostname(),
      pods: views.filter((v) => v !== undefined).sort((a, b) => Number(BigInt(a.createdAt) - BigInt(b.createdAt))),
    };
  }

  /** What changes when pods or containers come, go or change state: cheap to poll. */
  async fingerprint(): Promise<string> {
    const [pods, containers] = await Promise.all([this.cri.runtime.listPodSandbox({}), this.cri.runtime.listContainers({})]);
    return [...pods.items.map((p) => `${p.id}:${p.state}`), ...containers.containers.map((c) => `${c.id}:${c.state}`)]
      .sort()
      .join(',');
  }

  /** What `icetray explain pod ID` shows, and `explain container` for each container's newest attempt. */
  async detail(id: string): Promise<PodDetail> {
    const record = await podRecord(this.cri, id);
    const pod = await explainPod(record);
    const own = (await this.cri.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers;
    const containers = await Promise.all(
      newestAttempts(own).map(async ({ container }) => explainContainer(await containerRecord(this.cri, container.id, record))),
    );
    return { pod, containers };
  }
}
