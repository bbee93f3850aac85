import { ListPodSandboxResponse, PodSandboxState, type ListPodSandboxRequest } from '../generated/api.js';
import type { SandboxFilter } from '../sandbox/service.js';
import type { Runtime } from './runtime.js';
import { toPodSandbox } from './sandbox-convert.js';

/** ListPodSandbox: all sandboxes, or those matching the filter's id, state and labels (all must match). */
export async function listPodSandbox(runtime: Runtime, request: ListPodSandboxRequest): Promise<ListPodSandboxResponse> {
  const filter: SandboxFilter = {};
  if (request.filter !== undefined) {
    filter.id = request.filter.id;
    filter.labelSelector = request.filter.labelSelector;
    const state = request.filter.state?.state;
    if (state !== undefined) filter.state = state === PodSandboxState.SANDBOX_READY ? 'ready' : 'notready';
  }
  const sandboxes = await runtime.sandboxes.list(filter);
  return ListPodSandboxResponse.create({ items: sandboxes.map(toPodSandbox) });
}
