import { StopContainerResponse, type StopContainerRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * StopContainer: the stop signal, then SIGKILL after `timeout` seconds. Idempotent: a stopped
 * or unknown container is not an error (api.proto, RuntimeService.StopContainer).
 */
export async function stopContainer(runtime: Runtime, request: StopContainerRequest): Promise<StopContainerResponse> {
  await runtime.containers.stop(request.containerId, Number(request.timeout));
  return StopContainerResponse.create();
}
