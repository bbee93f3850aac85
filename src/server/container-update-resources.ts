import { InvalidArgumentError } from '../errors.js';
import { UpdateContainerResourcesResponse, type UpdateContainerResourcesRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/** UpdateContainerResources: new CPU and memory limits on a running container's cgroup. */
export async function updateContainerResources(
  runtime: Runtime,
  request: UpdateContainerResourcesRequest,
): Promise<UpdateContainerResourcesResponse> {
  if (request.linux === undefined) throw new InvalidArgumentError('linux resources are required');
  await runtime.containers.updateResources(request.containerId, request.linux);
  return UpdateContainerResourcesResponse.create();
}
