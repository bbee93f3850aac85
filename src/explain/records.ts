import type { CriClient } from '../cli/cri-client.js';
import { ContainerState, PodSandboxState } from '../generated/api.js';
import type { ContainerRecord } from './container.js';
import type { PodRecord } from './pod.js';

/**
 * What icetray recorded about a pod and a container, read over the CRI as a kubelet or crictl
 * would (verbose status info): the input of explainPod and explainContainer, for `icetray
 * explain` and `icetray ui` alike.
 */

export async function podRecord(cri: CriClient, id: string): Promise<PodRecord> {
  const response = await cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
  const status = response.status;
  return {
    id: status?.id ?? id,
    name: status?.metadata?.name ?? '',
    state: status?.state === PodSandboxState.SANDBOX_READY ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
    ip: status?.network?.ip ?? '',
    info: JSON.parse(response.info['info'] ?? '{}') as PodRecord['info'],
  };
}

/** `pod`, when the caller has its record already, spares the pod's verbose status (it runs a CNI CHECK). */
export async function containerRecord(cri: CriClient, id: string, pod?: PodRecord): Promise<ContainerRecord> {
  const status = await cri.runtime.containerStatus({ containerId: id, verbose: true });
  const info = JSON.parse(status.info['info'] ?? '{}') as { pid: number | null; monitorPid: number | null; sandboxId: string };
  const { info: podInfo, ip } = pod ?? (await podRecord(cri, info.sandboxId));
  const name = status.status?.metadata?.name ?? '';
  const siblings = (await cri.runtime.listContainers({ filter: { podSandboxId: info.sandboxId } })).containers.filter(
    (c) => c.metadata?.name === name && c.id !== status.status?.id,
  );
  const previous = await Promise.all(
    siblings.map(async (c) => {
      const s = (await cri.runtime.containerStatus({ containerId: c.id })).status;
      return {
        id: c.id,
        attempt: c.metadata?.attempt ?? 0,
        state: ContainerState[c.state],
        exitCode: s?.exitCode ?? 0,
        reason: s?.reason ?? '',
      };
    }),
  );
  return {
    id: status.status?.id ?? id,
    name,
    attempt: status.status?.metadata?.attempt ?? 0,
    state: ContainerState[status.status?.state ?? ContainerState.CONTAINER_UNKNOWN],
    pid: info.pid,
    monitorPid: info.monitorPid,
    pod: { id: info.sandboxId, pausePid: podInfo.pid, ip, namespaces: {} },
    previous: previous.sort((a, b) => a.attempt - b.attempt),
  };
}
