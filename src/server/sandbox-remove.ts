import { RemovePodSandboxResponse, type RemovePodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RemovePodSandbox: stops the pod if needed, then releases its namespaces and state.
 * An unknown id is success (api.proto: "must not return an error if the sandbox has already
 * been removed").
 */
export async function removePodSandbox(runtime: Runtime, request: RemovePodSandboxRequest): Promise<RemovePodSandboxResponse> {
  // The pod's containers go first: RemovePodSandbox removes them, running or not (api.proto).
  const sandbox = runtime.sandboxes.store.find(request.podSandboxId);
  if (sandbox !== undefined) await runtime.containers.stopAll(sandbox.id, true);
  await runtime.sandboxes.remove(request.podSandboxId);
  return RemovePodSandboxResponse.create();
}
