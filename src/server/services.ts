import {
  StreamContainerStatsResponse,
  StreamContainersResponse,
  StreamImagesResponse,
  StreamPodSandboxesResponse,
  StreamPodSandboxStatsResponse,
  StreamPodSandboxMetricsResponse,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from '../generated/api.js';
import { attach } from './container-attach.js';
import { createContainer } from './container-create.js';
import { exec } from './container-exec.js';
import { portForward } from './sandbox-portforward.js';
import { getContainerEvents } from './container-events.js';
import { execSync } from './container-exec-sync.js';
import { listContainers } from './container-list.js';
import { reopenContainerLog } from './container-log-reopen.js';
import { removeContainer } from './container-remove.js';
import { startContainer } from './container-start.js';
import { containerStats, listContainerStats } from './container-stats.js';
import { containerStatus } from './container-status.js';
import { stopContainer } from './container-stop.js';
import { updateContainerResources } from './container-update-resources.js';
import { imageFsInfo } from './imagefs-info.js';
import { listMetricDescriptors } from './metrics-list-descriptors.js';
import { listPodSandboxStats, podSandboxStats } from './sandbox-stats.js';
import { listImages } from './image-list.js';
import { pullImage } from './image-pull.js';
import { removeImage } from './image-remove.js';
import { imageStatus } from './image-status.js';
import { listStream, unary, unimplemented } from './rpc.js';
import { runtimeConfig } from './runtime-config.js';
import type { Runtime } from './runtime.js';
import { listPodSandbox } from './sandbox-list.js';
import { listPodSandboxMetrics } from './sandbox-metrics-list.js';
import { removePodSandbox } from './sandbox-remove.js';
import { runPodSandbox } from './sandbox-run.js';
import { podSandboxStatus } from './sandbox-status.js';
import { stopPodSandbox } from './sandbox-stop.js';
import { updatePodSandboxResources } from './sandbox-update-resources.js';
import { status } from './status.js';
import { updateRuntimeConfig } from './update-runtime-config.js';
import { version } from './version.js';

/**
 * The two CRI services. Each map is typed as the generated interface, so an RPC added to
 * api.proto breaks the build until someone decides what it does; RPCs not built yet answer
 * UNIMPLEMENTED with their name, never a stub success.
 */
export function runtimeService(runtime: Runtime): RuntimeServiceServer {
  return {
    version: unary('Version', version),
    status: unary('Status', (request) => status(runtime, request)),
    runtimeConfig: unary('RuntimeConfig', (request) => runtimeConfig(runtime, request)),
    updateRuntimeConfig: unary('UpdateRuntimeConfig', (request) => updateRuntimeConfig(runtime, request)),

    runPodSandbox: unary('RunPodSandbox', (request) => runPodSandbox(runtime, request)),
    stopPodSandbox: unary('StopPodSandbox', (request) => stopPodSandbox(runtime, request)),
    removePodSandbox: unary('RemovePodSandbox', (request) => removePodSandbox(runtime, request)),
    podSandboxStatus: unary('PodSandboxStatus', (request) => podSandboxStatus(runtime, request)),
    listPodSandbox: unary('ListPodSandbox', (request) => listPodSandbox(runtime, request)),
    streamPodSandboxes: listStream(
      'StreamPodSandboxes',
      async (request) => (await listPodSandbox(runtime, request)).items,
      (podSandboxes) => StreamPodSandboxesResponse.create({ podSandboxes }),
    ),
    updatePodSandboxResources: unary('UpdatePodSandboxResources', (request) => updatePodSandboxResources(runtime, request)),

    createContainer: unary('CreateContainer', (request) => createContainer(runtime, request)),
    startContainer: unary('StartContainer', (request) => startContainer(runtime, request)),
    stopContainer: unary('StopContainer', (request) => stopContainer(runtime, request)),
    removeContainer: unary('RemoveContainer', (request) => removeContainer(runtime, request)),
    listContainers: unary('ListContainers', (request) => listContainers(runtime, request)),
    streamContainers: listStream(
      'StreamContainers',
      async (request) => (await listContainers(runtime, request)).containers,
      (containers) => StreamContainersResponse.create({ containers }),
    ),
    containerStatus: unary('ContainerStatus', (request) => containerStatus(runtime, request)),
    updateContainerResources: unary('UpdateContainerResources', (request) => updateContainerResources(runtime, request)),
    reopenContainerLog: unary('ReopenContainerLog', (request) => reopenContainerLog(runtime, request)),
    execSync: unary('ExecSync', (request) => execSync(runtime, request)),
    exec: unary('Exec', (request) => exec(runtime, request)),
    attach: unary('Attach', (request) => attach(runtime, request)),
    portForward: unary('PortForward', (request) => portForward(runtime, request)),

    containerStats: unary('ContainerStats', (request) => containerStats(runtime, request)),
    listContainerStats: unary('ListContainerStats', (request) => listContainerStats(runtime, request)),
    streamContainerStats: listStream(
      'StreamContainerStats',
      async (request) => (await listContainerStats(runtime, request)).stats,
      (containerStats) => StreamContainerStatsResponse.create({ containerStats }),
    ),
    podSandboxStats: unary('PodSandboxStats', (request) => podSandboxStats(runtime, request)),
    listPodSandboxStats: unary('ListPodSandboxStats', (request) => listPodSandboxStats(runtime, request)),
    streamPodSandboxStats: listStream(
      'StreamPodSandboxStats',
      async (request) => (await listPodSandboxStats(runtime, request)).stats,
      (podSandboxStats) => StreamPodSandboxStatsResponse.create({ podSandboxStats }),
    ),
    listMetricDescriptors: unary('ListMetricDescriptors', listMetricDescriptors),
    listPodSandboxMetrics: unary('ListPodSandboxMetrics', (request) => listPodSandboxMetrics(runtime, request)),
    streamPodSandboxMetrics: listStream(
      'StreamPodSandboxMetrics',
      async (request) => (await listPodSandboxMetrics(runtime, request)).podMetrics,
      (podSandboxMetrics) => StreamPodSandboxMetricsResponse.create({ podSandboxMetrics }),
    ),

    checkpointContainer: unimplemented('CheckpointContainer'),
    checkpointPod: unimplemented('CheckpointPod'),
    restorePod: unimplemented('RestorePod'),
    getContainerEvents: getContainerEvents(runtime),
  };
}

export function imageService(runtime: Runtime): ImageServiceServer {
  return {
    listImages: unary('ListImages', (request) => listImages(runtime.images, request)),
    streamImages: listStream(
      'StreamImages',
      async (request) => (await listImages(runtime.images, request)).images,
      (images) => StreamImagesResponse.create({ images }),
    ),
    imageStatus: unary('ImageStatus', (request) => imageStatus(runtime.images, request)),
    pullImage: unary('PullImage', (request, call) => pullImage(runtime.images, request, call)),
    removeImage: unary('RemoveImage', (request) => removeImage(runtime.images, request)),
    imageFsInfo: unary('ImageFsInfo', (request) => imageFsInfo(runtime.images, request)),
  };
}
