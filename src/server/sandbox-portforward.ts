import { PortForwardResponse, type PortForwardRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/** PortForward: the URL of a streaming session whose connections reach ports inside the pod. */
export async function portForward(runtime: Runtime, request: PortForwardRequest): Promise<PortForwardResponse> {
  await runtime.sandboxes.get(request.podSandboxId); // NotFound for an unknown pod
  return PortForwardResponse.create({ url: runtime.streaming.portForwardUrl(request) });
}
