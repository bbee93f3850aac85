import {
  ContainerMetrics,
  ListPodSandboxMetricsResponse,
  PodSandboxMetrics,
  type ListPodSandboxMetricsRequest,
} from '../generated/api.js';
import type { Container } from '../containers/container.js';
import { log } from '../log.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import {
  cgroupMetrics,
  filesystemMetrics,
  networkMetrics,
  openFileMetrics,
  timeMetrics,
  type SeriesLabels,
} from '../stats/metrics.js';
import { nowNanos } from '../time.js';
import { statsCollectorOf } from './container-stats-collector.js';
import type { Runtime } from './runtime.js';

/** The series of one container: its cgroup, writable layer, open files, start and last-seen times. */
async function containerMetrics(runtime: Runtime, pod: Omit<SeriesLabels, 'container' | 'id' | 'image'>, container: Container) {
  const labels: SeriesLabels = {
    ...pod,
    container: container.config.metadata?.name ?? '',
    id: container.id,
    image: container.imageName ?? container.config.image?.image ?? container.imageRef,
  };
  const details = await statsCollectorOf(runtime).containerDetails(container);
  return ContainerMetrics.create({
    containerId: container.id,
    metrics: [
      ...(details.cgroup === undefined ? [] : cgroupMetrics(labels, details.cgroup)),
      ...filesystemMetrics(labels, details.filesystem, details.writableLayer.usage),
      ...openFileMetrics(labels, details.openFiles),
      ...timeMetrics(labels, container.startedAt, nowNanos()),
    ],
  });
}

/** A pod's own series (its cgroup and its network, container="") and its running containers'. */
async function podMetrics(runtime: Runtime, sandbox: Sandbox): Promise<PodSandboxMetrics> {
  const pod = { pod: sandbox.config.metadata?.name ?? '', namespace: sandbox.config.metadata?.namespace ?? '' };
  const own: SeriesLabels = { ...pod, container: '', id: sandbox.id, image: '' };
  const { cgroup, interfaces } = await statsCollectorOf(runtime).readPod(sandbox);
  const containers = await Promise.all(
    runtime.containers.list({ sandboxId: sandbox.id, state: 'running' }).map((c) =>
      containerMetrics(runtime, pod, c).catch((err: unknown) => {
        // One container removed while it is read must not cost the whole node its metrics (containerd does the same).
        log.warn({ podSandboxId: sandbox.id, containerId: c.id, err }, 'failed to read container metrics');
        return undefined;
      }),
    ),
  );
  return PodSandboxMetrics.create({
    podSandboxId: sandbox.id,
    metrics: [...cgroupMetrics(own, cgroup), ...networkMetrics(own, interfaces)],
    containerMetrics: containers.filter((c) => c !== undefined),
  });
}

/** ListPodSandboxMetrics: the cAdvisor-style metrics of every ready pod and its running containers. */
export async function listPodSandboxMetrics(
  runtime: Runtime,
  _request: ListPodSandboxMetricsRequest,
): Promise<ListPodSandboxMetricsResponse> {
  const sandboxes = await runtime.sandboxes.list({ state: 'ready' });
  const pods = await Promise.all(
    sandboxes.map((sandbox) =>
      podMetrics(runtime, sandbox).catch((err: unknown) => {
        log.warn({ podSandboxId: sandbox.id, err }, 'failed to read pod metrics');
        return undefined;
      }),
    ),
  );
  return ListPodSandboxMetricsResponse.create({ podMetrics: pods.filter((p) => p !== undefined) });
}
