import { InvalidArgumentError } from '../errors.js';
import { CreateContainerResponse, type CreateContainerRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/** CreateContainer: a container in a ready pod, from a pulled image; it does not run yet. */
export async function createContainer(runtime: Runtime, request: CreateContainerRequest): Promise<CreateContainerResponse> {
  if (request.config === undefined) throw new InvalidArgumentError('config is required');
  const container = await runtime.containers.create(request.podSandboxId, request.config);
  return CreateContainerResponse.create({ containerId: container.id });
}
