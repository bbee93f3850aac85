import { RemoveContainerResponse, type RemoveContainerRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RemoveContainer: stops a running container, then removes it. An unknown id is success
 * (api.proto: "must not return an error if the container has already been removed").
 */
export async function removeContainer(runtime: Runtime, request: RemoveContainerRequest): Promise<RemoveContainerResponse> {
  await runtime.containers.remove(request.containerId);
  return RemoveContainerResponse.create();
}
