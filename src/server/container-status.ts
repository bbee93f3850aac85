import { ContainerStatusResponse, type ContainerStatusRequest } from '../generated/api.js';
import { namespaceInode } from '../os/proc-stat.js';
import type { Container } from '../containers/container.js';
import type { Runtime } from './runtime.js';
import { toContainerStatus } from './container-convert.js';

/** The verbose `info` of a container: its pid and its monitor's, namespaces, root and cgroup. */
async function verboseInfo(container: Container): Promise<Record<string, string>> {
  const pid = container.process?.namespacePid;
  const namespaces: Record<string, number | null> = {};
  if (pid !== undefined) {
    for (const ns of ['net', 'ipc', 'uts', 'pid', 'mnt'])
      namespaces[ns] = await namespaceInode(`/proc/${pid}/ns/${ns}`).catch(() => null);
  }
  const info = {
    pid: pid ?? null,
    // nsexec's parent half: signals go to it, it records the exit and holds the output pipes.
    monitorPid: container.process?.pid ?? null,
    sandboxId: container.sandboxId,
    namespaces,
    rootfs: container.rootfs,
    cgroup: container.cgroup,
    logPath: container.logPath,
  };
  return { info: JSON.stringify(info) };
}

/** ContainerStatus: state, times, exit code and reason of one container. */
export async function containerStatus(runtime: Runtime, request: ContainerStatusRequest): Promise<ContainerStatusResponse> {
  const container = await runtime.containers.get(request.containerId);
  return ContainerStatusResponse.create({
    status: toContainerStatus(container),
    info: request.verbose ? await verboseInfo(container) : {},
  });
}
