import { AttachResponse, type AttachRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/** Attach: the URL of a streaming session connected to a running container's stdio. */
export function attach(runtime: Runtime, request: AttachRequest): Promise<AttachResponse> {
  runtime.containers.attachable(request.containerId); // NotFound, or FailedPrecondition when not running
  return Promise.resolve(AttachResponse.create({ url: runtime.streaming.attachUrl(request) }));
}
