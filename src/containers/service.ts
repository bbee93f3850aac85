import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config.js';
import { DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { ContainerEvents } from '../events.js';
import { NamespaceMode, Signal, type ContainerConfig, type LinuxContainerResources } from '../generated/api.js';
import { KeyedLock } from '../lock.js';
import { log } from '../log.js';
import { streamClosed } from '../os/child.js';
import { processGone, processStartTime, signalProcess } from '../os/proc-stat.js';
import { unmountAllUnder } from '../os/mount.js';
import { Rollback } from '../rollback.js';
import { podFiles } from '../sandbox/pod-files.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { SandboxService } from '../sandbox/service.js';
import { IdStore, newId } from '../store.js';
import { nowNanos, sleepSeconds } from '../time.js';
import { checkAbsolutePath, checkExecArgs, checkLine, pathInside } from '../validate.js';
import { containerDevices } from './devices.js';
import {
  containerName,
  exitReason,
  resolveStopSignal,
  signalNumber,
  transition,
  type Container,
  type ContainerState,
} from './container.js';
import { ContainerLogWriter } from './logs.js';
import type { CgroupPort, ContainerImage, ImagePort, LauncherPort, ProcessExit, RunningProcess } from './ports.js';
import { AttachableStdio } from '../streaming/attach.js';
import { containerArgv, containerEnv, containerWorkingDir } from './process-spec.js';
import { resolveUser, validateMounts, validateSecurityContext } from './security-context.js';
import { containersDir, loadContainers, saveContainer } from './state.js';

export interface ContainerDeps {
  config: Pick<Config, 'rootDir'>;
  sandboxes: SandboxService;
  images: ImagePort;
  cgroups: CgroupPort;
  launcher: LauncherPort;
  events: ContainerEvents;
  /** The cgroup a container of this pod gets, by the cgroup driver's naming rules (known before it is made). */
  cgroupOf(sandbox: Sandbox, containerId: string): string;
}

export interface ContainerFilter {
  id?: string;
  sandboxId?: string;
  state?: ContainerState;
  labelSelector?: Record<string, string>;
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** What a running container holds in memory: its log writer and the wait for its exit. */
interface Live {
  logs: ContainerLogWriter | undefined;
  exited: Promise<void>;
  /** Where attach sessions (crictl attach) plug into the running process's stdio. */
  stdio: AttachableStdio;
}

/**
 * The image as the user named it: user_specified_image (the kubelet sends the pod spec's image
 * there and the resolved id in `image`), else the reference itself when it is a name rather than
 * an id or digest, else the image's first tag (containerd's rule).
 */
function imageName(config: ContainerConfig, imageRef: string, image: ContainerImage): string {
  const specified = config.image?.userSpecifiedImage ?? '';
  if (specified !== '') return specified;
  const isId = imageRef.startsWith('sha256:') || /^[a-f0-9]{64}$/.test(imageRef) || imageRef.includes('@');
  return isId ? (image.repoTags[0] ?? imageRef) : imageRef;
}

/**
 * The stop signal of a record an older icetray wrote, which has none: the one CreateContainer
 * now chooses, SIGTERM where the image's cannot be read (that icetray sent SIGTERM then too).
 */
function olderStopSignal(config: ContainerConfig, fromImage: string): Signal {
  try {
    return resolveStopSignal(config.stopSignal, fromImage);
  } catch {
    return Signal.SIGNAL_SIGTERM;
  }
}

/** A container that ended while no icetray watched it, and left no exit record. */
const UNKNOWN_EXIT: ProcessExit = { exitCode: -1, signal: undefined };
const UNKNOWN_EXIT_MESSAGE = 'the process ended while icetray was not running: its exit code is unknown';

/**
 * Containers: processes started in their pod's namespaces, each in its own cgroup and root
 * filesystem, logging in the CRI format. Knows nothing of gRPC.
 */
export class ContainerService {
  readonly store = new IdStore<Container>('container');
  private readonly live = new Map<string, Live>();
  private readonly locks = new KeyedLock();

  constructor(private readonly deps: ContainerDeps) {}

  /**
   * Reloads the containers of a previous run and finishes what a crash interrupted, before
   * icetray serves (call it after SandboxService.load, before SandboxService.recover): a
   * half-created container is undone (its CreateContainer never answered), a half-started one
   * goes back to created with whatever it started killed, a half-removed one is removed, and so
   * are the containers of pods that will not survive recovery.
   */
  async load(): Promise<void> {
    const { records, orphans } = await loadContainers(this.deps.config.rootDir);
    for (const dir of orphans) await this.removeFolder(dir.slice(dir.lastIndexOf('/') + 1), dir);
    for (const container of records) {
      if (container.pending !== undefined)
        log.warn({ containerId: container.id, pending: container.pending }, 'finishing what a crash interrupted');
      if (container.pending === 'create') {
        await this.removeFolder(container.id, container.dir);
        continue;
      }
      // A record an older icetray wrote has no resolved user yet.
      if ((container as Partial<Container>).user === undefined) {
        const image = this.deps.images.resolve(container.imageId);
        container.user = await resolveUser(container.rootfs, container.config.linux?.securityContext, image?.user ?? '');
      }
      if ((container as Partial<Container>).stopSignal === undefined)
        container.stopSignal = olderStopSignal(container.config, this.deps.images.resolve(container.imageId)?.stopSignal ?? '');
      this.store.add(container);
      this.store.reserveName(containerName(container.sandboxId, container.config), container.id);
      if (container.pending === 'start') await this.undoStart(container);
      else await this.recover(container);
      const fate = this.deps.sandboxes.fateAfterCrash(container.sandboxId);
      if (container.pending === 'remove' || fate === 'gone') await this.remove(container.id);
      else if (fate === 'stop') await this.stop(container.id, 0);
    }
  }

  /**
   * CreateContainer: a record, a rootfs over the image, no process yet. The pod is held (shared)
   * meanwhile, so a RemovePodSandbox waits for it rather than leaving it behind, orphaned.
   */
  async create(sandboxId: string, config: ContainerConfig): Promise<Container> {
    if (config.metadata === undefined || config.metadata.name === '')
      throw new InvalidArgumentError('container config: metadata.name is required');
    checkLine(config.metadata.name, 'container metadata.name');
    const imageRef = config.image?.image ?? '';
    if (imageRef === '') throw new InvalidArgumentError('container config: image.image is required');
    const image = this.deps.images.resolve(imageRef);
    if (image === undefined) throw new NotFoundError(`image ${JSON.stringify(imageRef.slice(0, 200))} not found: pull it first`);
    // Fail now, not at start, on a command, working dir or security context that cannot be.
    checkExecArgs(containerArgv(config, image), containerEnv(config, image), 'container');
    validateSecurityContext(config.linux?.securityContext);
    validateMounts(config.mounts);
    checkAbsolutePath(containerWorkingDir(config, image), 'working_dir');
    const stopSignal = resolveStopSignal(config.stopSignal, image.stopSignal);
    // The CRI devices only: a privileged container's host devices are read at start, where they are used.
    await containerDevices({ devices: config.devices, linux: undefined });

    return this.deps.sandboxes.withReady(sandboxId, async (sandbox) => {
      // CRI: log_path is relative to the pod's log_directory, and must stay inside it.
      const logDirectory = sandbox.config.logDirectory;
      const logPath = config.logPath === '' || logDirectory === '' ? '' : pathInside(logDirectory, config.logPath, 'log_path');
      const id = newId();
      const name = containerName(sandbox.id, config);
      this.store.reserveName(name, id);
      const dir = join(containersDir(this.deps.config.rootDir), id);
      const container: Container = {
        id,
        sandboxId: sandbox.id,
        config,
        imageRef,
        imageId: image.id,
        imageName: imageName(config, imageRef, image),
        imageDigest: image.repoDigests[0] ?? image.id,
        state: 'created',
        createdAt: nowNanos(),
        startedAt: 0n,
        finishedAt: 0n,
        exitCode: 0,
        reason: '',
        message: '',
        process: undefined,
        logPath,
        dir,
        rootfs: join(dir, 'rootfs'),
        cgroup: '',
        user: { uid: 0, gid: 0, groups: [] },
        oomScoreAdj: undefined,
        stopSignal,
        pending: 'create',
      };
      try {
        await Rollback.run(async (rollback) => {
          await mkdir(dir, { recursive: true, mode: 0o700 });
          rollback.push('remove the container folder', () => this.removeFolder(id, dir));
          await saveContainer(container);
          container.rootfs = await this.deps.images.createRootfs(image.id, id, dir);
          // Names are resolved in the container's own /etc/passwd and /etc/group (as containerd does).
          container.user = await resolveUser(container.rootfs, config.linux?.securityContext, image.user);
          container.pending = undefined;
          await saveContainer(container);
        });
      } catch (err) {
        this.store.releaseName(name);
        throw err;
      }
      this.store.add(container);
      this.deps.events.publish('created', id, sandbox.id);
      return container;
    });
  }

  /** A container's folder and rootfs, whatever is left of them (the image's use of it released too). */
  private async removeFolder(id: string, dir: string): Promise<void> {
    await this.deps.images.releaseRootfs('', id, dir);
    await unmountAllUnder(dir);
    // Retried: an exit being recorded at this moment may still be writing into the folder.
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }

  private image(container: Container): ContainerImage {
    const image = this.deps.images.resolve(container.imageId);
    if (image === undefined)
      throw new FailedPreconditionError(`image "${container.imageId}" of container "${container.id}" is gone`);
    return image;
  }

  /** The pid whose PID namespace a TARGET container joins (namespace_options.target_id). */
  private targetPid(config: ContainerConfig): number | undefined {
    const options = config.linux?.securityContext?.namespaceOptions;
    if (options?.pid !== NamespaceMode.TARGET) return undefined;
    const target = this.store.get(options.targetId);
    if (target.state !== 'running' || target.process === undefined) {
      throw new FailedPreconditionError(`target container "${options.targetId}" is not running`);
    }
    return target.process.namespacePid;
  }

  /**
   * StartContainer: the process, placed in its cgroup before it runs, its output to the log. The
   * pod is held (shared) so that it cannot be stopped meanwhile; the record names the cgroup
   * and says `start` is pending before anything is made, and says `running` only once it is.
   */
  async start(idOrPrefix: string): Promise<void> {
    const container = this.store.get(idOrPrefix);
    await this.deps.sandboxes.withReady(container.sandboxId, (sandbox) =>
      this.locks.with(container.id, async () => {
        if (this.store.find(container.id) !== container)
          throw new FailedPreconditionError(`container "${container.id}" was removed`);
        if (container.state !== 'created')
          throw new FailedPreconditionError(`container "${container.id}" is ${container.state}, not created`);
        const image = this.image(container);
        const { config } = container;
        await Rollback.run(async (rollback) => {
          container.cgroup = this.deps.cgroupOf(sandbox, container.id);
          container.pending = 'start';
          await saveContainer(container);
          rollback.push('undo the start', () => this.undoStart(container));
          // The device nodes it gets, and the device cgroup that lets it open exactly those and the defaults.
          const devices = await containerDevices(config);
          const privileged = config.linux?.securityContext?.privileged === true;
          await this.deps.cgroups.createContainer(sandbox.cgroup.pod, container.id, config.linux?.resources, {
            privileged,
            nodes: devices,
          });
          const logs = container.logPath === '' ? undefined : await ContainerLogWriter.open(container.logPath);
          rollback.push('close the log', () => logs?.close() ?? Promise.resolve());

          const cgroup = container.cgroup;
          const started = await this.deps.launcher.start({
            containerId: container.id,
            config,
            podNamespaces: sandbox.namespaces,
            podFiles: podFiles(sandbox.dir),
            podShm: sandbox.shm,
            targetPid: this.targetPid(config),
            hostname: sandbox.hostname,
            rootfs: container.rootfs,
            devices,
            argv: containerArgv(config, image),
            env: containerEnv(config, image),
            cwd: containerWorkingDir(config, image),
            user: container.user,
            stateDir: container.dir,
            placeInCgroup: (pid) => this.deps.cgroups.addProcess(cgroup, pid),
          });
          rollback.push("close the process's pipes", () => {
            for (const stream of [started.stdout, started.stderr, started.stdin]) stream?.destroy();
            return Promise.resolve();
          });
          this.noteOomScoreAdj(container, started.oomScoreAdj);
          const running: Pick<Container, 'state' | 'process' | 'startedAt' | 'pending' | 'oomScoreAdj'> = {
            state: 'running',
            process: { pid: started.pid, namespacePid: started.namespacePid, startTime: processStartTime(started.pid) ?? '' },
            startedAt: nowNanos(),
            pending: undefined,
            oomScoreAdj: started.oomScoreAdj,
          };
          // On disk first: only a start that is recorded is a start a crash keeps.
          await saveContainer({ ...container, ...running });
          transition(container, 'running');
          Object.assign(container, running);
          this.watch(container, started, logs);
        });
      }),
    );
    this.deps.events.publish('started', container.id, container.sandboxId);
  }

  /** Says so when the kernel would not give the oom_score_adj asked for (the value in effect is what is reported). */
  private noteOomScoreAdj(container: Container, inEffect: number): void {
    const asked = Number(container.config.linux?.resources?.oomScoreAdj ?? 0n);
    if (asked !== 0 && asked !== inEffect)
      log.warn(
        { containerId: container.id, asked, inEffect },
        'oom_score_adj could not be set as asked (lowering it needs CAP_SYS_RESOURCE): the container runs with the value in effect',
      );
  }

  /**
   * Undoes a start that did not finish, after a failure or a crash: whatever it started is
   * killed (the process, its monitor: all are in its cgroup from before they run), the cgroup
   * removed, and the container is CREATED as before. A process not yet in the cgroup waits for
   * icetray's go-ahead, and ends by itself when icetray is gone.
   */
  private async undoStart(container: Container): Promise<void> {
    if (container.cgroup !== '') {
      await this.emptyCgroup(container.cgroup);
      await this.deps.cgroups.remove(container.cgroup);
    }
    container.cgroup = '';
    container.pending = undefined;
    await saveContainer(container);
  }

  /** Kills every process of a cgroup and waits (a bounded while) until the kernel has let them all go. */
  private async emptyCgroup(cgroup: string): Promise<void> {
    const pids = async (): Promise<number[]> => this.deps.cgroups.pids(cgroup).catch(() => []);
    for (let i = 0; i < 100; i++) {
      const left = await pids();
      if (left.length === 0) return;
      for (const pid of left) signalProcess(pid, 'SIGKILL');
      // SIGKILLed processes take a moment to leave their cgroup; it cannot be removed before.
      await sleep(20);
    }
  }

  /** Output to the log and to attach sessions; the exit recorded when it comes. */
  private watch(container: Container, running: RunningProcess, logs: ContainerLogWriter | undefined): void {
    const { config } = container;
    const stdio = new AttachableStdio({ stdin: running.stdin, stdinOnce: config.stdinOnce, resize: running.resize });
    running.stdout.on('data', (chunk: Buffer) => stdio.output('stdout', chunk));
    running.stderr.on('data', (chunk: Buffer) => stdio.output('stderr', chunk));
    if (logs !== undefined) {
      void logs.follow('stdout', running.stdout);
      void logs.follow('stderr', running.stderr);
    }
    const exited = running.exited.then(async (exit) => {
      stdio.exited();
      // Nothing reads its stdin any more: icetray's end of the pipe goes (it leaked one fd per container).
      running.stdin?.destroy();
      await this.onExit(container, exit, logs);
    });
    this.live.set(container.id, { logs, exited, stdio });
  }

  /**
   * After an icetray restart: a container still running is watched again (its monitor kept the
   * output pipes open meanwhile); one that ended while icetray was away gets the exit its
   * monitor recorded.
   */
  private async recover(container: Container): Promise<void> {
    const process = container.process;
    if (container.state !== 'running' || process === undefined) return;
    // The log first: output must find its reader the moment the pipes are open again.
    const logs = container.logPath === '' ? undefined : await ContainerLogWriter.open(container.logPath);
    const running = this.deps.launcher.reattach(process, container.dir);
    if (running !== undefined) {
      container.oomScoreAdj = running.oomScoreAdj;
      this.watch(container, running, logs);
      // Ended while icetray was away, its monitor waiting for the last output to be read: wait
      // for that, so the container is not shown running once icetray serves.
      if ((await this.deps.launcher.lastExit(container.dir)) !== undefined) await this.live.get(container.id)?.exited;
      return;
    }
    await this.onExit(container, (await this.deps.launcher.lastExit(container.dir)) ?? UNKNOWN_EXIT, logs);
  }

  private async onExit(container: Container, exit: ProcessExit, logs: ContainerLogWriter | undefined): Promise<void> {
    await logs?.close();
    // An OOM kill is the kernel's SIGKILL; the cgroup's oom_kill counter tells it apart.
    const oomKilled =
      exit.signal === 'SIGKILL' &&
      container.cgroup !== '' &&
      (await this.deps.cgroups.oomKilled(container.cgroup).catch(() => false));
    container.exitCode = exit.exitCode;
    container.reason = exitReason(exit.exitCode, oomKilled);
    container.message = exit.exitCode === UNKNOWN_EXIT.exitCode ? UNKNOWN_EXIT_MESSAGE : '';
    container.finishedAt = nowNanos();
    container.process = undefined;
    transition(container, 'exited');
    await this.killLeftovers(container);
    await saveContainer(container).catch((err: unknown) =>
      log.error({ err, containerId: container.id }, 'failed to save an exited container'),
    );
    this.deps.events.publish('stopped', container.id, container.sandboxId);
  }

  /** Processes the main process left in its cgroup (children in a shared PID namespace); `spare` is left alone. */
  private async killLeftovers(container: Container, spare?: number): Promise<void> {
    if (container.cgroup === '') return;
    const pids = await this.deps.cgroups.pids(container.cgroup).catch(() => []);
    for (const pid of pids) if (pid !== spare) signalProcess(pid, 'SIGKILL');
  }

  /**
   * StopContainer: the stop signal (the config's, else the image's STOPSIGNAL, else SIGTERM),
   * then SIGKILL after `timeoutSeconds`. Idempotent: an unknown or exited container is fine.
   */
  async stop(idOrPrefix: string, timeoutSeconds: number): Promise<void> {
    const container = this.store.find(idOrPrefix);
    if (container === undefined) return;
    await this.locks.with(container.id, async () => {
      if (container.state === 'created') {
        transition(container, 'exited');
        container.finishedAt = nowNanos();
        await saveContainer(container);
        return;
      }
      const live = this.live.get(container.id);
      const process = container.process;
      if (container.state !== 'running' || process === undefined) return;
      const signal = signalNumber(container.stopSignal);
      // The monitor forwards what it catches. SIGKILL and SIGSTOP cannot be caught: sent to the
      // monitor they would kill it (leaving the container running, unwatched) or freeze it (never
      // reaping the container). They go to the container's process, as the timeout's SIGKILL does.
      const uncatchable = signal === constants.signals.SIGKILL || signal === constants.signals.SIGSTOP;
      signalProcess(uncatchable ? process.namespacePid : process.pid, signal);
      const exited = live?.exited ?? processGone(process.pid, process.startTime);
      const timedOut = await Promise.race([exited.then(() => false), sleepSeconds(timeoutSeconds).then(() => true)]);
      if (timedOut) {
        log.info(
          { containerId: container.id, signal: Signal[container.stopSignal], timeoutSeconds },
          'container did not stop in time: SIGKILL',
        );
        // The container's processes, not its monitor: the monitor sees the kill, records it (137,
        // also for an icetray started after it) and then goes by itself.
        signalProcess(process.namespacePid, 'SIGKILL');
        await this.killLeftovers(container, process.pid);
        await exited;
      }
    });
  }

  /**
   * RemoveContainer: stops it if running, then its cgroup, rootfs and state; `remove` is
   * recorded as pending first, so a crash half-way is finished at the next start. Idempotent.
   */
  async remove(idOrPrefix: string): Promise<void> {
    const container = this.store.find(idOrPrefix);
    if (container === undefined) return;
    await this.stop(container.id, 0);
    const removed = await this.locks.with(container.id, async () => {
      // A concurrent RemoveContainer may have done it while this one waited.
      if (this.store.find(container.id) !== container) return false;
      container.pending = 'remove';
      await saveContainer(container);
      await this.live.get(container.id)?.exited;
      if (container.cgroup !== '') {
        await this.emptyCgroup(container.cgroup);
        await this.deps.cgroups.remove(container.cgroup);
      }
      await this.removeFolder(container.id, container.dir);
      this.live.delete(container.id);
      this.store.delete(container.id);
      this.store.releaseName(containerName(container.sandboxId, container.config));
      return true;
    });
    if (removed) this.deps.events.publish('deleted', container.id, container.sandboxId);
  }

  async get(idOrPrefix: string): Promise<Container> {
    return Promise.resolve(this.store.get(idOrPrefix));
  }

  list(filter: ContainerFilter = {}): Container[] {
    const candidates =
      filter.id !== undefined && filter.id !== ''
        ? [this.store.find(filter.id)].filter((c) => c !== undefined)
        : this.store.all();
    return candidates.filter((container) => {
      if (filter.sandboxId !== undefined && filter.sandboxId !== '' && !container.sandboxId.startsWith(filter.sandboxId))
        return false;
      if (filter.state !== undefined && container.state !== filter.state) return false;
      const labels = container.config.labels;
      return Object.entries(filter.labelSelector ?? {}).every(([key, value]) => labels[key] === value);
    });
  }

  /** Stops every container of a pod (StopPodSandbox); `remove` also deletes them (RemovePodSandbox). */
  async stopAll(sandboxId: string, remove: boolean): Promise<void> {
    for (const container of this.list({ sandboxId })) {
      if (remove) await this.remove(container.id);
      else await this.stop(container.id, 0);
    }
  }

  /** ReopenContainerLog: new output goes to a fresh file at the log path (the kubelet rotated it). */
  async reopenLog(idOrPrefix: string): Promise<void> {
    const container = this.store.get(idOrPrefix);
    const logs = this.live.get(container.id)?.logs;
    if (container.state !== 'running' || logs === undefined) {
      throw new FailedPreconditionError(`container "${container.id}" is not running: its log cannot be reopened`);
    }
    await logs.reopen();
  }

  /** UpdateContainerResources: new limits on the container's cgroup. */
  async updateResources(idOrPrefix: string, resources: LinuxContainerResources): Promise<void> {
    const container = this.store.get(idOrPrefix);
    if (container.state !== 'running' || container.cgroup === '') {
      throw new FailedPreconditionError(`container "${container.id}" is not running`);
    }
    await this.deps.cgroups.update(container.cgroup, resources);
    container.config.linux = { securityContext: container.config.linux?.securityContext, resources };
    await saveContainer(container);
  }

  /**
   * ExecSync: a command in the container's namespaces, root and cgroup; its output and exit
   * code. With a timeout the command is killed when it runs out (CRI: DeadlineExceeded).
   */
  async execSync(idOrPrefix: string, argv: string[], timeoutSeconds: number): Promise<ExecResult> {
    if (timeoutSeconds < 0) throw new InvalidArgumentError(`exec timeout ${String(timeoutSeconds)} must not be negative`);
    const process = await this.startExec(idOrPrefix, argv);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    process.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    process.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    // A process can exit before its last output is read: wait for both pipes to close too.
    const drained = Promise.all([streamClosed(process.stdout), streamClosed(process.stderr)]);
    process.stdin?.end();
    const timeout =
      timeoutSeconds > 0 ? sleepSeconds(timeoutSeconds).then(() => 'timeout' as const) : new Promise<never>(() => undefined);
    const result = await Promise.race([process.exited, timeout]);
    if (result === 'timeout') {
      // The exec leads a process group of its own (nsexec): kill all it started, then it.
      signalProcess(-process.namespacePid, 'SIGKILL');
      signalProcess(process.pid, 'SIGKILL');
      await process.exited;
      // Killed is not yet gone: wait until the pod's init has reaped it, so a `ps` right after
      // the timeout (critest's check) no longer shows it.
      for (let i = 0; i < 100 && existsSync(`/proc/${process.namespacePid}`); i++) await sleep(20);
      throw new DeadlineExceededError(`command ${JSON.stringify(argv)} timed out after ${timeoutSeconds}s`);
    }
    await drained;
    return { exitCode: result.exitCode, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
  }

  /**
   * A command in a running container — its namespaces, root, cgroup, user and security — with
   * pipes for stdin, stdout and stderr (ExecSync, and crictl exec through the streaming server).
   */
  async startExec(idOrPrefix: string, argv: string[], tty = false): Promise<RunningProcess> {
    const container = this.store.get(idOrPrefix);
    if (container.state !== 'running' || container.process === undefined) {
      throw new FailedPreconditionError(`container "${container.id}" is not running`);
    }
    if (argv.length === 0) throw new InvalidArgumentError('exec: cmd must not be empty');
    const cgroup = container.cgroup;
    const image = this.image(container);
    const env = containerEnv(container.config, image);
    checkExecArgs(argv, env, 'exec');
    return this.deps.launcher.exec({
      containerPid: container.process.namespacePid,
      config: container.config,
      user: container.user,
      stateDir: container.dir,
      argv,
      env,
      cwd: containerWorkingDir(container.config, image),
      tty,
      placeInCgroup: (pid) => this.deps.cgroups.addProcess(cgroup, pid),
    });
  }

  /** The stdio attach sessions connect to; a container that is not running has none. */
  attachable(idOrPrefix: string): AttachableStdio {
    const container = this.store.get(idOrPrefix);
    const live = this.live.get(container.id);
    if (container.state !== 'running' || live === undefined) {
      throw new FailedPreconditionError(`container "${container.id}" is not running: there is nothing to attach to`);
    }
    return live.stdio;
  }
}
