import { PodSandbox, PodSandboxState, PodSandboxStatus } from '../generated/api.js';
import type { Sandbox, SandboxState } from '../sandbox/sandbox.js';

export const SANDBOX_STATES: Record<SandboxState, PodSandboxState> = {
  ready: PodSandboxState.SANDBOX_READY,
  notready: PodSandboxState.SANDBOX_NOTREADY,
};

/** The CRI summary of a sandbox, as ListPodSandbox returns it. */
export function toPodSandbox(sandbox: Sandbox): PodSandbox {
  return PodSandbox.create({
    id: sandbox.id,
    metadata: sandbox.config.metadata,
    state: SANDBOX_STATES[sandbox.state],
    createdAt: sandbox.createdAt,
    labels: sandbox.config.labels,
    annotations: sandbox.config.annotations,
    runtimeHandler: sandbox.runtimeHandler,
  });
}

/**
 * The CRI status of a sandbox. The namespace options are echoed back as given: the kubelet
 * compares them with the pod spec and recreates a sandbox whose options differ.
 */
export function toPodSandboxStatus(sandbox: Sandbox): PodSandboxStatus {
  const ready = sandbox.state === 'ready';
  return PodSandboxStatus.create({
    id: sandbox.id,
    metadata: sandbox.config.metadata,
    state: SANDBOX_STATES[sandbox.state],
    createdAt: sandbox.createdAt,
    network: {
      ip: ready ? (sandbox.network?.ip ?? '') : '',
      additionalIps: ready ? (sandbox.network?.additionalIps ?? []).map((ip) => ({ ip })) : [],
    },
    linux: { namespaces: { options: sandbox.config.linux?.securityContext?.namespaceOptions } },
    labels: sandbox.config.labels,
    annotations: sandbox.config.annotations,
    runtimeHandler: sandbox.runtimeHandler,
  });
}
