import { StopPodSandboxResponse, type StopPodSandboxRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * StopPodSandbox: releases the pod's IP (CNI DEL) and stops pause. Idempotent: the kubelet
 * calls it repeatedly, and an unknown id is not an error (api.proto, RuntimeService.StopPodSandbox).
 */
export async function stopPodSandbox(runtime: Runtime, request: StopPodSandboxRequest): Promise<StopPodSandboxResponse> {
  // CRI: "If there are any running containers in the sandbox, they must be forcibly terminated."
  const sandbox = runtime.sandboxes.store.find(request.podSandboxId);
  if (sandbox !== undefined) await runtime.containers.stopAll(sandbox.id, false);
  await runtime.sandboxes.stop(request.podSandboxId);
  return StopPodSandboxResponse.create();
}
