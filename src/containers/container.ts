import { constants } from 'node:os';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import { Signal, type ContainerConfig } from '../generated/api.js';
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
   * The signal StopContainer sends first, chosen at CreateContainer (KEP-4960): the config's
   * stop_signal, else the image's STOPSIGNAL, else SIGTERM. ContainerStatus reports this one.
   */
  stopSignal: Signal;
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

/**
 * glibc's SIGRTMIN (the kernel's is 32; glibc keeps 32 and 33 for itself): the numbering
 * `SIGRTMIN+n` means in images and in moby/sys/signal, which containerd uses.
 */
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/** A signal name without its SIG prefix (QUIT, RTMIN+3, RTMAX-1) → its number on Linux. */
function numberOfName(name: string): number | undefined {
  const rt = /^RT(MIN|MAX)(?:([+-])(\d{1,2}))?$/.exec(name);
  if (rt !== null) {
    const offset = Number(rt[3] ?? '0') * (rt[2] === '-' ? -1 : 1);
    const n = (rt[1] === 'MIN' ? SIGRTMIN : SIGRTMAX) + offset;
    return n >= SIGRTMIN && n <= SIGRTMAX ? n : undefined;
  }
  // SIGCLD is Linux's other name for SIGCHLD; Node does not list it.
  if (name === 'CLD') return constants.signals.SIGCHLD;
  return (constants.signals as Record<string, number | undefined>)[`SIG${name}`];
}

/** The CRI name of a signal (SIGNAL_SIGRTMINPLUS3) without its prefixes, as images write it (RTMIN+3). */
function criSignalName(signal: Signal): string | undefined {
  const name = (Signal as unknown as Record<number, string | undefined>)[signal];
  if (name === undefined || !name.startsWith('SIGNAL_SIG')) return undefined;
  return name.slice('SIGNAL_SIG'.length).replace('MINPLUS', 'MIN+').replace('MAXMINUS', 'MAX-');
}

/** The Linux number of a CRI signal, for kill(2). */
export function signalNumber(signal: Signal): number {
  const number = numberOfName(criSignalName(signal) ?? '');
  if (number === undefined) throw new InvalidArgumentError(`stop_signal ${String(signal)} is not a signal`);
  return number;
}

/**
 * The signal a container is stopped with (KEP-4960: the config's stop_signal, else the image's
 * STOPSIGNAL, else SIGTERM), as a CRI Signal. An image's STOPSIGNAL is a name (SIGQUIT, QUIT,
 * SIGRTMIN+3) or a number, as Docker reads it.
 */
export function resolveStopSignal(fromConfig: Signal, fromImage: string): Signal {
  if (fromConfig !== Signal.SIGNAL_RUNTIME_DEFAULT) {
    if (criSignalName(fromConfig) === undefined)
      throw new InvalidArgumentError(`stop_signal ${String(fromConfig)} is not a known CRI Signal`);
    return fromConfig;
  }
  if (fromImage === '') return Signal.SIGNAL_SIGTERM;
  const name = fromImage.toUpperCase().replace(/^SIG/, '');
  const criName = `SIGNAL_SIG${name.replace('MIN+', 'MINPLUS').replace('MAX-', 'MAXMINUS')}`;
  const byName = (Signal as unknown as Record<string, Signal | undefined>)[criName];
  if (byName !== undefined) return byName;
  const number = /^\d+$/.test(fromImage) ? Number(fromImage) : numberOfName(name);
  const signals = Object.values(Signal).filter((v): v is Signal => typeof v === 'number' && v !== Signal.UNRECOGNIZED);
  const match = signals.find((s) => numberOfName(criSignalName(s) ?? '') === number);
  if (match === undefined) throw new InvalidArgumentError(`the image's STOPSIGNAL "${fromImage.slice(0, 40)}" is not a signal`);
  return match;
}
