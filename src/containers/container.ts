import { FailedPreconditionError } from '../errors.js';
import type { ContainerConfig } from '../generated/api.js';
import type { ProcessUser } from './security-context.js';

/**
 * A container and its states.
 *
 *   CreateContainer          StartContainer             exits, or StopContainer
 *  ─────────────────▶ created ──────────────▶ running ───────────────────────────▶ exited
 *                        │                                                          │
 *                        └──────────────────── RemoveContainer ◀────────────────────┘
 *
 * CRI mapping: created = CONTAINER_CREATED, running = CONTAINER_RUNNING, exited =
 * CONTAINER_EXITED. A container never runs twice: the kubelet restarts a container by
 * creating a new one with attempt + 1, which joins the same pod namespaces.
 * RemoveContainer of a running container stops it first.
 */
export type ContainerState = 'created' | 'running' | 'exited';

export interface ContainerProcess {
  /** The pid icetray signals and waits for. */
  pid: number;
  /** The pid inside the container's namespaces (differs when nsexec forked into a PID namespace). */
  namespacePid: number;
  /** /proc/<pid>/stat start time: a pid plus its start time names one process for good. */
  startTime: string;
}

export interface Container {
  id: string;
  sandboxId: string;
  config: ContainerConfig;
  /** The image as the kubelet named it (often its id), and the id (config digest) it resolved to. */
  imageRef: string;
  imageId: string;
  /**
   * What ContainerStatus says the image is (CRI image.image, image_ref): the name the user wrote
   * (user_specified_image, else the image's first tag) and its repo digest (else the id), as
   * containerd reports them. The kubelet shows these as the pod's image and imageID, and its
   * "image updated" checks compare them to the pod spec (issue #16). Undefined in older records.
   */
  imageName?: string | undefined;
  imageDigest?: string | undefined;
  state: ContainerState;
  /** Nanoseconds since the epoch; 0n until it happens. */
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  /** Completed (exit 0), Error, OOMKilled — the kubelet shows it as the container's last state. */
  reason: string;
  message: string;
  process: ContainerProcess | undefined;
  /** Absolute CRI log path (pod log_directory + container log_path), '' for none. */
  logPath: string;
  /** Where the container's own files live (rootfs upper layer, state record). */
  dir: string;
  rootfs: string;
  /** The cgroup the driver made for it ('' until started). */
  cgroup: string;
  /** Who its process and execs run as, resolved at CreateContainer from the config and the image. */
  user: ProcessUser;
  /**
   * The oom_score_adj really in effect for its process, which can differ from the one asked for
   * (a node without CAP_SYS_RESOURCE cannot lower it): ContainerStatus reports this one.
   */
  oomScoreAdj: number | undefined;
  /**
   * An operation in flight, recorded before its first step and cleared after its last: what an
   * icetray restarted after a crash must undo (create, start) or finish (remove) before it serves.
   */
  pending: ContainerOperation | undefined;
}

/** The operations that change a container on the node in several steps. */
export type ContainerOperation = 'create' | 'start' | 'remove';

const TRANSITIONS: Record<ContainerState, readonly ContainerState[]> = {
  created: ['running', 'exited'],
  running: ['exited'],
  exited: [],
};

export function transition(container: Container, to: ContainerState): void {
  if (container.state === to) return;
  if (!TRANSITIONS[container.state].includes(to)) {
    throw new FailedPreconditionError(`container "${container.id}" is ${container.state}, it cannot become ${to}`);
  }
  container.state = to;
}

/** The reservation key of a container inside its pod: name and attempt (the kubelet's rule). */
export function containerName(sandboxId: string, config: ContainerConfig): string {
  return [sandboxId, config.metadata?.name, config.metadata?.attempt].join('_');
}

/**
 * A process's end as the kubelet reports it: 0 → Completed, 128+9 after an OOM kill →
 * OOMKilled, -1 (it ended unseen, leaving no record) → Unknown.
 */
export function exitReason(exitCode: number, oomKilled: boolean): string {
  if (oomKilled) return 'OOMKilled';
  if (exitCode < 0) return 'Unknown';
  return exitCode === 0 ? 'Completed' : 'Error';
}
