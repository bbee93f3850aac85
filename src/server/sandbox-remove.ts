import { RemovePodSandboxResponse, type RemovePodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RemovePodSandbox: stops the pod if needed, then releases its namespaces and state.
 * An unknown id is success (api.proto: "must not return an error if the sandbox has already
 * been removed").
 */
export async function removePodSandbox(runtime: Runtime, request: RemovePodSandboxRequest): Promise<RemovePodSandboxResponse> {
  await runtime.sandboxes.remove(request.podSandboxId);
  return RemovePodSandboxResponse.create();
}
