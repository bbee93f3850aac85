import { ContainerState, ListContainersResponse, type ListContainersRequest } from '../generated/api.js';
import type { ContainerState as State } from '../containers/container.js';
import type { ContainerFilter } from '../containers/service.js';
import type { Runtime } from './runtime.js';
import { toCriContainer } from './container-convert.js';

const STATES: Partial<Record<ContainerState, State>> = {
  [ContainerState.CONTAINER_CREATED]: 'created',
  [ContainerState.CONTAINER_RUNNING]: 'running',
  [ContainerState.CONTAINER_EXITED]: 'exited',
};

/** ListContainers: all containers, or those matching id, pod, state and labels (all must match). */
export function listContainers(runtime: Runtime, request: ListContainersRequest): Promise<ListContainersResponse> {
  const filter: ContainerFilter = {};
  if (request.filter !== undefined) {
    filter.id = request.filter.id;
    filter.sandboxId = request.filter.podSandboxId;
    filter.labelSelector = request.filter.labelSelector;
    const state = request.filter.state?.state;
    if (state !== undefined) {
      // CONTAINER_UNKNOWN matches nothing icetray has: its states are always known.
      const wanted = STATES[state];
      if (wanted === undefined) return Promise.resolve(ListContainersResponse.create({ containers: [] }));
      filter.state = wanted;
    }
  }
  return Promise.resolve(ListContainersResponse.create({ containers: runtime.containers.list(filter).map(toCriContainer) }));
}
