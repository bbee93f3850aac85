import { StopPodSandboxResponse, type StopPodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * StopPodSandbox: forcibly stops the pod's containers (CRI: "If there are any running containers
 * in the sandbox, they must be forcibly terminated"), then releases the pod's IP (CNI DEL) and
 * stops pause. Idempotent: the kubelet calls it repeatedly, and an unknown id is not an error
 * (api.proto, RuntimeService.StopPodSandbox).
 */
export async function stopPodSandbox(runtime: Runtime, request: StopPodSandboxRequest): Promise<StopPodSandboxResponse> {
  await runtime.sandboxes.stop(request.podSandboxId, (sandboxId) => runtime.containers.stopAll(sandboxId, false));
  return StopPodSandboxResponse.create();
}
