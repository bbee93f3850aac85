import {
  Container as CriContainer,
  ContainerState as CriContainerState,
  ContainerStatus,
  type ContainerResources,
  type ImageSpec,
} from '../generated/api.js';
import type { Container, ContainerState } from '../containers/container.js';

export const CONTAINER_STATES: Record<ContainerState, CriContainerState> = {
  created: CriContainerState.CONTAINER_CREATED,
  running: CriContainerState.CONTAINER_RUNNING,
  exited: CriContainerState.CONTAINER_EXITED,
};

/** The image spec as given, naming the image the user wrote rather than the id the kubelet resolved it to. */
function shownImage(container: Container): ImageSpec | undefined {
  const spec = container.config.image;
  return spec === undefined ? undefined : { ...spec, image: container.imageName ?? spec.image };
}

/** The CRI summary of a container, as ListContainers returns it. */
export function toCriContainer(container: Container): CriContainer {
  return CriContainer.create({
    id: container.id,
    podSandboxId: container.sandboxId,
    metadata: container.config.metadata,
    image: shownImage(container),
    imageRef: container.imageDigest ?? container.imageId,
    imageId: container.imageId,
    state: CONTAINER_STATES[container.state],
    createdAt: container.createdAt,
    labels: container.config.labels,
    annotations: container.config.annotations,
  });
}

/**
 * The container's resources as they are: the config's limits, and the oom_score_adj its process
 * really got — a node that cannot lower it (no CAP_SYS_RESOURCE) must not claim the value asked.
 */
function resourcesInEffect(container: Container): ContainerResources | undefined {
  const linux = container.config.linux?.resources;
  if (linux === undefined) return undefined;
  const oomScoreAdj = container.oomScoreAdj === undefined ? linux.oomScoreAdj : BigInt(container.oomScoreAdj);
  return { linux: { ...linux, oomScoreAdj }, windows: undefined };
}

/** The CRI status of a container: times, exit code and reason, mounts echoed as asked. */
export function toContainerStatus(container: Container): ContainerStatus {
  return ContainerStatus.create({
    id: container.id,
    metadata: container.config.metadata,
    state: CONTAINER_STATES[container.state],
    createdAt: container.createdAt,
    startedAt: container.startedAt,
    finishedAt: container.finishedAt,
    exitCode: container.exitCode,
    image: shownImage(container),
    imageRef: container.imageDigest ?? container.imageId,
    imageId: container.imageId,
    reason: container.reason,
    message: container.message,
    labels: container.config.labels,
    annotations: container.config.annotations,
    mounts: container.config.mounts,
    logPath: container.logPath,
    resources: resourcesInEffect(container),
    stopSignal: container.stopSignal,
    // The identity its process runs with; the supplementary list includes the primary group,
    // as the kubelet expects (`id -G` of the process).
    user: {
      linux: {
        uid: BigInt(container.user.uid),
        gid: BigInt(container.user.gid),
        supplementalGroups: [...new Set([container.user.gid, ...container.user.groups])].map(BigInt),
      },
    },
  });
}
