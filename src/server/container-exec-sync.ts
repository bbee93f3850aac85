import { ExecSyncResponse, type ExecSyncRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * ExecSync: runs a command in a running container and returns its output and exit code. A
 * timeout kills the command and answers DeadlineExceeded, as the kubelet's exec probes expect.
 */
export async function execSync(runtime: Runtime, request: ExecSyncRequest): Promise<ExecSyncResponse> {
  const result = await runtime.containers.execSync(request.containerId, request.cmd, Number(request.timeout));
  return ExecSyncResponse.create(result);
}
