import { UpdatePodSandboxResourcesResponse, type UpdatePodSandboxResourcesRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * UpdatePodSandboxResources: the kubelet resized a pod in place (pod-level resources) and tells
 * the runtime, which records the new overhead and resources on the sandbox. Unknown pod: NotFound.
 */
export async function updatePodSandboxResources(
  runtime: Runtime,
  request: UpdatePodSandboxResourcesRequest,
): Promise<UpdatePodSandboxResourcesResponse> {
  await runtime.sandboxes.updateResources(request.podSandboxId, request.overhead, request.resources);
  return UpdatePodSandboxResourcesResponse.create();
}
