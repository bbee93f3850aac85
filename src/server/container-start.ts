import { StartContainerResponse, type StartContainerRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/** StartContainer: runs a created container's process in its pod. */
export async function startContainer(runtime: Runtime, request: StartContainerRequest): Promise<StartContainerResponse> {
  await runtime.containers.start(request.containerId);
  return StartContainerResponse.create();
}
