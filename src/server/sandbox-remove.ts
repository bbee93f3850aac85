import { RemovePodSandboxResponse, type RemovePodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RemovePodSandbox: removes the pod's containers, running or not (api.proto), then stops the pod
 * if needed and releases its namespaces and state. An unknown id is success (api.proto: "must
 * not return an error if the sandbox has already been removed").
 */
export async function removePodSandbox(runtime: Runtime, request: RemovePodSandboxRequest): Promise<RemovePodSandboxResponse> {
  await runtime.sandboxes.remove(request.podSandboxId, (sandboxId) => runtime.containers.stopAll(sandboxId, true));
  return RemovePodSandboxResponse.create();
}
