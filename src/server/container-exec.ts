import { ExecResponse, type ExecRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * Exec: the URL of a one-time streaming session that runs the command in the container
 * (crictl exec, kubectl exec). The client then speaks SPDY or WebSocket to the streaming server.
 */
export function exec(runtime: Runtime, request: ExecRequest): Promise<ExecResponse> {
  runtime.containers.attachable(request.containerId); // NotFound, or FailedPrecondition when not running
  return Promise.resolve(ExecResponse.create({ url: runtime.streaming.execUrl(request) }));
}
