import { PodSandbox, PodSandboxState } from '../generated/api.js';
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
