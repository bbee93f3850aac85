import { FailedPreconditionError } from '../errors.js';
import { NamespaceMode, type PodSandboxConfig } from '../generated/api.js';
import type { PodNetwork } from './network.js';

/**
 * A pod sandbox and its states.
 *
 *     RunPodSandbox          StopPodSandbox, or pause died
 *   ───────────────▶ ready ─────────────────────────────▶ notready ──RemovePodSandbox──▶ (gone)
 *
 * CRI mapping: ready = SANDBOX_READY, notready = SANDBOX_NOTREADY. A sandbox never becomes ready
 * again: the kubelet makes a new one (attempt + 1) instead. Remove works from either state
 * (it stops first).
 */
export type SandboxState = 'ready' | 'notready';

/** The namespaces a pod can own; `pid` only when the pod shares one (namespace_options.pid = POD). */
export type PodNamespace = 'net' | 'ipc' | 'uts' | 'pid';

export interface PauseProcess {
  pid: number;
  /** /proc/<pid>/stat start time: tells a live pause from a new process that reused its pid. */
  startTime: string;
}

export interface Sandbox {
  id: string;
  /** The config as the kubelet sent it (metadata, labels, annotations, dns, ports, linux). */
  config: PodSandboxConfig;
  runtimeHandler: string;
  /** Nanoseconds since the epoch (CRI times are int64 ns). */
  createdAt: bigint;
  state: SandboxState;
  pauseImage: string;
  pause: PauseProcess | undefined;
  /** Pinned namespace files (bind mounts that keep each namespace alive without pause). */
  namespaces: Partial<Record<PodNamespace, string>>;
  network: PodNetwork | undefined;
  hostname: string;
  /** Where the pod's resolv.conf, hosts and hostname files live. */
  dir: string;
  /** The pod's /dev/shm (a tmpfs its containers share), when it has its own IPC namespace. */
  shm: string | undefined;
  /**
   * The pod's cgroup (its containers' go inside) and pause's, as the cgroup driver names them.
   * `podOwned`: icetray chose the pod cgroup (no cgroup_parent) and so removes it; one the
   * kubelet named is the kubelet's to remove.
   */
  cgroup: { pod: string; pause: string; podOwned: boolean };
  /**
   * An operation in flight, recorded before its first step and cleared after its last: what an
   * icetray restarted after a crash must undo (run) or finish (stop, remove) before it serves.
   */
  pending: SandboxOperation | undefined;
}

/** The operations that change a pod on the node in several steps. */
export type SandboxOperation = 'run' | 'stop' | 'remove';

const TRANSITIONS: Record<SandboxState, readonly SandboxState[]> = {
  ready: ['notready'],
  notready: [],
};

/** Moves a sandbox to a new state, rejecting moves the diagram above does not have. */
export function transition(sandbox: Sandbox, to: SandboxState): void {
  if (sandbox.state === to) return;
  if (!TRANSITIONS[sandbox.state].includes(to)) {
    throw new FailedPreconditionError(`sandbox "${sandbox.id}" cannot go from ${sandbox.state} to ${to}`);
  }
  sandbox.state = to;
}

/** The reservation key of a pod: the kubelet's (name, namespace, uid, attempt) tuple. */
export function sandboxName(config: PodSandboxConfig): string {
  const m = config.metadata;
  return [m?.name, m?.namespace, m?.uid, m?.attempt].join('_');
}

/** Which namespaces the pod creates for itself, from its namespace_options (absent = all POD). */
export function podNamespaces(config: PodSandboxConfig): PodNamespace[] {
  const options = config.linux?.securityContext?.namespaceOptions;
  const owned: PodNamespace[] = [];
  // hostNetwork pods share the node's network and, as the kubelet does, its UTS namespace.
  if (options?.network !== NamespaceMode.NODE) owned.push('net', 'uts');
  if (options?.ipc !== NamespaceMode.NODE) owned.push('ipc');
  if ((options?.pid ?? NamespaceMode.POD) === NamespaceMode.POD) owned.push('pid');
  return owned;
}
