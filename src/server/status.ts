import { RuntimeCondition, RuntimeHandler, StatusResponse, type StatusRequest } from '../generated/api.js';
import { RECURSIVE_READONLY_MOUNTS } from '../os/kernel.js';
import type { Readiness } from '../sandbox/network.js';
import { networkReady, runtimeReadiness, type Runtime } from './runtime.js';

function condition(type: string, readiness: Readiness): RuntimeCondition {
  return RuntimeCondition.create({ type, status: readiness.ready, reason: readiness.reason, message: readiness.message });
}

/**
 * Status: the two conditions the kubelet gates on. RuntimeReady=false makes the node NotReady;
 * NetworkReady=false keeps non-hostNetwork pods from being scheduled onto it.
 * `verbose` adds a JSON `info` map (CRI: values are JSON) with the config in force.
 */
export async function status(runtime: Runtime, request: StatusRequest): Promise<StatusResponse> {
  const [runtimeState, networkState] = await Promise.all([runtimeReadiness(runtime), networkReady(runtime)]);
  const { config, file, sources } = runtime.loaded;
  const info: Record<string, string> = {};
  if (request.verbose) {
    info['config'] = JSON.stringify({
      file: file ?? null,
      values: config,
      sources,
      origins: runtime.loaded.origins,
      warnings: runtime.loaded.warnings,
    });
    info['cgroupDriver'] = JSON.stringify(config.cgroupDriver);
    info['cgroupVersion'] = JSON.stringify(runtime.cgroups.version);
    info['pauseImage'] = JSON.stringify(config.pauseImage);
    info['pauseBinary'] = JSON.stringify(runtime.pauseBinary);
    info['socket'] = JSON.stringify(config.socket);
  }
  return StatusResponse.create({
    status: { conditions: [condition('RuntimeReady', runtimeState), condition('NetworkReady', networkState)] },
    // Each configured handler, the default ("") first. All run on nsexec, so all have the same
    // features, claimed only where real: recursive read-only mounts where the kernel has
    // mount_setattr; no user namespaces. Runtime-wide: the nosuid/nodev/noexec mount options and
    // the supplemental groups policy (Merge/Strict, and ContainerStatus.user).
    runtimeHandlers: config.runtimeHandlers.map((name) =>
      RuntimeHandler.create({ name, features: { recursiveReadOnlyMounts: RECURSIVE_READONLY_MOUNTS, userNamespaces: false } }),
    ),
    features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false, mountOptions: true },
    info,
  });
}
