import { InvalidArgumentError } from '../errors.js';
import { RunPodSandboxResponse, type RunPodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RunPodSandbox: creates the pod's namespaces held by a pause process, gives it an IP through
 * CNI, and returns once it is ready (CRI: "Runtimes must ensure the sandbox is in the ready
 * state on success"). On failure nothing of the pod is left. The runtime handler must be one the
 * config declares (`runtime_handlers`); the pod records it, and PodSandboxStatus reports it.
 */
export async function runPodSandbox(runtime: Runtime, request: RunPodSandboxRequest): Promise<RunPodSandboxResponse> {
  if (request.config === undefined) throw new InvalidArgumentError('config is required');
  const sandbox = await runtime.sandboxes.run(request.config, request.runtimeHandler);
  return RunPodSandboxResponse.create({ podSandboxId: sandbox.id });
}
