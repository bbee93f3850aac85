import { ReopenContainerLogResponse, type ReopenContainerLogRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * ReopenContainerLog: the kubelet rotated the log (renamed it); new output must go to a new
 * file at the original path. Only a running container has a log being written.
 */
export async function reopenContainerLog(
  runtime: Runtime,
  request: ReopenContainerLogRequest,
): Promise<ReopenContainerLogResponse> {
  await runtime.containers.reopenLog(request.containerId);
  return ReopenContainerLogResponse.create();
}
