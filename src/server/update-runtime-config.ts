import { validatePodCidr } from '../config/config.js';
import { UpdateRuntimeConfigResponse, type UpdateRuntimeConfigRequest } from '../generated/api.js';
import { applyPodCidr } from '../sandbox/network.js';
import type { Runtime } from './runtime.js';

/**
 * UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR (from Node.spec.podCIDR).
 * An empty CIDR means "no change" (api.proto: runtimes should omit it). Dual-stack lists are
 * comma-separated; icetray's default network is IPv4, so it takes the IPv4 range.
 */
export async function updateRuntimeConfig(
  runtime: Runtime,
  request: UpdateRuntimeConfigRequest,
): Promise<UpdateRuntimeConfigResponse> {
  const cidrs = (request.runtimeConfig?.networkConfig?.podCidr ?? '').split(',').map((cidr) => cidr.trim());
  const ipv4 = cidrs.find((cidr) => cidr !== '' && !cidr.includes(':'));
  if (ipv4 !== undefined) {
    await applyPodCidr(runtime.loaded.config, validatePodCidr('runtime_config.network_config.pod_cidr', ipv4));
  }
  return UpdateRuntimeConfigResponse.create();
}
