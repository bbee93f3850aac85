import { CgroupDriver, RuntimeConfigResponse, type RuntimeConfigRequest } from '../generated/api.js';
import type { Runtime } from './runtime.js';

/**
 * RuntimeConfig: the cgroup driver in force. The kubelet (≥ 1.28, KubeletCgroupDriverFromCRI)
 * reads it at start and builds its cgroup hierarchy to match, so a kubelet and a runtime can
 * no longer disagree on the driver.
 */
export function runtimeConfig(runtime: Runtime, _request: RuntimeConfigRequest): Promise<RuntimeConfigResponse> {
  const driver = runtime.loaded.config.cgroupDriver === 'systemd' ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS;
  return Promise.resolve(RuntimeConfigResponse.create({ linux: { cgroupDriver: driver } }));
}
