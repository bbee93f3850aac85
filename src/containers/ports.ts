import type { Readable, Writable } from 'node:stream';
import type { DeviceAccess } from '../cgroups/devices.js';
import type { LinuxContainerResources } from '../generated/api.js';
import type { ContainerProcess } from './container.js';
import type { DeviceNode } from './devices.js';
import type { ProcessUser } from './security-context.js';
import type { TerminalSize } from '../streaming/backend.js';
import type { ImageProcessDefaults } from './process-spec.js';

/**
 * What the container lifecycle needs from the rest of the node, as small interfaces: the image
 * store, the cgroup driver and the process launcher. runtime.ts plugs the real ones in; the
 * lifecycle's tests plug in fakes.
 */

/** A container's image, as the image store resolved it. */
export interface ContainerImage extends ImageProcessDefaults {
  /** The image id: the digest of its config (sha256:…). */
  id: string;
  /** The image's STOPSIGNAL (e.g. "SIGQUIT"), '' for none. */
  stopSignal: string;
  /** Its names ("registry.k8s.io/pause:3.10") and digests ("…/pause@sha256:…"), as ListImages reports them. */
  repoTags: string[];
  repoDigests: string[];
}

export interface ImagePort {
  resolve(ref: string): ContainerImage | undefined;
  /** A writable root filesystem for one container, over the image's layers. */
  createRootfs(imageId: string, containerId: string, containerDir: string): Promise<string>;
  /** Unmounts and deletes the container's rootfs, and lets the image be removed again. */
  releaseRootfs(imageId: string, containerId: string, containerDir: string): Promise<void>;
}

export interface CgroupPort {
  createContainer(
    podCgroup: string,
    containerId: string,
    resources: LinuxContainerResources | undefined,
    devices: DeviceAccess,
  ): Promise<string>;
  addProcess(cgroup: string, pid: number): Promise<void>;
  update(cgroup: string, resources: LinuxContainerResources): Promise<void>;
  pids(cgroup: string): Promise<number[]>;
  /** Whether the kernel's OOM killer killed a process of this cgroup. */
  oomKilled(cgroup: string): Promise<boolean>;
  remove(cgroup: string): Promise<void>;
}

/** How a process ended. */
export interface ProcessExit {
  exitCode: number;
  /** The signal that killed it, e.g. "SIGKILL" (exitCode is then 128 + its number). */
  signal: string | undefined;
}

export interface RunningProcess {
  /** The process icetray signals and waits for (nsexec's monitor when the PID namespace changed). */
  pid: number;
  /** The process that is in the container's namespaces, for exec and inspection. */
  namespacePid: number;
  /**
   * The oom_score_adj really in effect for the process: what the config asked, or the value it
   * kept when the kernel refused a lower one (lowering needs CAP_SYS_RESOURCE; the start goes
   * on, as containerd's restrict_oom_score_adj does).
   */
  oomScoreAdj: number;
  stdout: Readable;
  stderr: Readable;
  stdin: Writable | undefined;
  /** Sets the window size of the process's terminal; undefined without a tty. */
  resize: ((size: TerminalSize) => void) | undefined;
  exited: Promise<ProcessExit>;
}

/** Everything a launcher needs to start a container's process in its pod. */
export interface LaunchRequest {
  containerId: string;
  config: import('../generated/api.js').ContainerConfig;
  /** The pod's pinned namespaces (net, ipc, uts, and pid when the pod shares one). */
  podNamespaces: Partial<Record<'net' | 'ipc' | 'uts' | 'pid', string>>;
  /** The pod's own files to bind into the container. */
  podFiles: { hostname: string; resolvConf: string; hosts: string };
  /** The pod's /dev/shm, shared by its containers as the IPC namespace is. */
  podShm: string | undefined;
  /** The pid of another container whose PID namespace this one joins (namespace_options.pid = TARGET). */
  targetPid: number | undefined;
  hostname: string;
  rootfs: string;
  argv: string[];
  env: string[];
  cwd: string;
  /** Who the process runs as (resolved at CreateContainer). */
  user: ProcessUser;
  /** The container's own folder, for files the launcher writes (its seccomp profile). */
  stateDir: string;
  /**
   * Device nodes to make in the container beyond the default set (containerDevices in
   * devices.ts: the config's devices, every host device for a privileged container).
   */
  devices: DeviceNode[];
  /** Called with the new process's pid before it runs any of the container's code. */
  placeInCgroup(pid: number): Promise<void>;
}

export interface ExecRequest {
  /** The container's main process, whose namespaces, root and user the exec joins. */
  containerPid: number;
  config: import('../generated/api.js').ContainerConfig;
  user: ProcessUser;
  stateDir: string;
  argv: string[];
  env: string[];
  cwd: string;
  /** Run on a pseudo-terminal (crictl exec -t): stdout then carries all output, stderr none. */
  tty: boolean;
  placeInCgroup(pid: number): Promise<void>;
}

export interface LauncherPort {
  start(request: LaunchRequest): Promise<RunningProcess>;
  exec(request: ExecRequest): Promise<RunningProcess>;
  /**
   * A container process that an earlier icetray run started and that still runs: its output
   * reopened, its end awaited. Undefined when it is gone. Its stdin is not kept: a restart
   * closes it, as the client streaming into it is gone too.
   */
  reattach(process: ContainerProcess, stateDir: string): RunningProcess | undefined;
  /** How a container process ended, recorded by its monitor in `stateDir`; undefined when unknown. */
  lastExit(stateDir: string): Promise<ProcessExit | undefined>;
}
