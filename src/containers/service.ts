import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config.js';
import { DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { ContainerEvents } from '../events.js';
import { NamespaceMode, type ContainerConfig, type LinuxContainerResources } from '../generated/api.js';
import { KeyedLock } from '../lock.js';
import { log } from '../log.js';
import { streamClosed } from '../os/child.js';
import { processGone, processStartTime, signalProcess } from '../os/proc-stat.js';
import { Rollback } from '../rollback.js';
import { podFiles } from '../sandbox/pod-files.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { SandboxService } from '../sandbox/service.js';
import { IdStore, newId } from '../store.js';
import { containerName, exitReason, transition, type Container, type ContainerState } from './container.js';
import { ContainerLogWriter } from './logs.js';
import type { CgroupPort, ContainerImage, ImagePort, LauncherPort, ProcessExit, RunningProcess } from './ports.js';
import { AttachableStdio } from '../streaming/attach.js';
import { containerArgv, containerEnv, containerWorkingDir } from './process-spec.js';
import { resolveUser, validateMounts, validateSecurityContext } from './security-context.js';
import { deleteContainerDir, loadContainers, saveContainer } from './state.js';

export interface ContainerDeps {
  config: Pick<Config, 'rootDir'>;
  sandboxes: SandboxService;
  images: ImagePort;
  cgroups: CgroupPort;
  launcher: LauncherPort;
  events: ContainerEvents;
  /** The pod cgroup a sandbox's containers go into. */
  podCgroup(sandbox: Sandbox): string;
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

const now = (): bigint => BigInt(Date.now()) * 1_000_000n;

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

  async load(): Promise<void> {
    for (const container of await loadContainers(this.deps.config.rootDir)) {
      // A record an older icetray wrote has no resolved user yet.
      if ((container as Partial<Container>).user === undefined) {
        const image = this.deps.images.resolve(container.imageId);
        container.user = await resolveUser(container.rootfs, container.config.linux?.securityContext, image?.user ?? '');
      }
      this.store.add(container);
      this.store.reserveName(containerName(container.sandboxId, container.config), container.id);
      await this.recover(container);
    }
  }

  /** CreateContainer: a record, a rootfs over the image and a log file; no process yet. */
  async create(sandboxId: string, config: ContainerConfig): Promise<Container> {
    const sandbox = await this.deps.sandboxes.get(sandboxId);
    if (sandbox.state !== 'ready') throw new FailedPreconditionError(`sandbox "${sandbox.id}" is not ready`);
    if (config.metadata === undefined || config.metadata.name === '')
      throw new InvalidArgumentError('container config: metadata.name is required');
    const imageRef = config.image?.image ?? '';
    if (imageRef === '') throw new InvalidArgumentError('container config: image.image is required');
    const image = this.deps.images.resolve(imageRef);
    if (image === undefined) throw new NotFoundError(`image "${imageRef}" not found: pull it first`);
    if (config.logPath !== '' && isAbsolute(config.logPath))
      throw new InvalidArgumentError(`log_path "${config.logPath}" must be relative to the pod's log_directory`);
    // Fail now, not at start, on a command, working dir or security context that cannot be.
    containerArgv(config, image);
    validateSecurityContext(config.linux?.securityContext);
    validateMounts(config.mounts);
    containerWorkingDir(config, image);

    const id = newId();
    const name = containerName(sandbox.id, config);
    return Rollback.run(async (rollback) => {
      this.store.reserveName(name, id);
      rollback.push('release the name', () => {
        this.store.releaseName(name);
        return Promise.resolve();
      });
      const dir = join(this.deps.config.rootDir, 'containers', id);
      await mkdir(dir, { recursive: true });
      rollback.push('remove the container folder', () => rm(dir, { recursive: true, force: true }));
      const rootfs = await this.deps.images.createRootfs(image.id, id, dir);
      rollback.push('release the rootfs', () => this.deps.images.releaseRootfs(image.id, id, dir));
      // Names are resolved in the container's own /etc/passwd and /etc/group (as containerd does).
      const user = await resolveUser(rootfs, config.linux?.securityContext, image.user);

      const logDirectory = sandbox.config.logDirectory;
      const container: Container = {
        id,
        sandboxId: sandbox.id,
        config,
        imageRef,
        imageId: image.id,
        state: 'created',
        createdAt: now(),
        startedAt: 0n,
        finishedAt: 0n,
        exitCode: 0,
        reason: '',
        message: '',
        process: undefined,
        logPath: config.logPath !== '' && logDirectory !== '' ? join(logDirectory, config.logPath) : '',
        dir,
        rootfs,
        cgroup: '',
        user,
      };
      await saveContainer(container);
      this.store.add(container);
      this.deps.events.publish('created', id, sandbox.id);
      return container;
    });
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

  /** StartContainer: the process, placed in its cgroup before it runs, its output to the log. */
  async start(idOrPrefix: string): Promise<void> {
    const container = this.store.get(idOrPrefix);
    await this.locks.with(container.id, async () => {
      if (container.state !== 'created')
        throw new FailedPreconditionError(`container "${container.id}" is ${container.state}, not created`);
      const sandbox = await this.deps.sandboxes.get(container.sandboxId);
      if (sandbox.state !== 'ready') throw new FailedPreconditionError(`sandbox "${sandbox.id}" is not ready`);
      const image = this.image(container);
      const { config } = container;

      await Rollback.run(async (rollback) => {
        const cgroup = await this.deps.cgroups.createContainer(
          this.deps.podCgroup(sandbox),
          container.id,
          config.linux?.resources,
        );
        rollback.push('remove the cgroup', () => this.deps.cgroups.remove(cgroup));
        container.cgroup = cgroup;
        const logs = container.logPath === '' ? undefined : await ContainerLogWriter.open(container.logPath);
        rollback.push('close the log', () => logs?.close() ?? Promise.resolve());

        const started = await this.deps.launcher.start({
          containerId: container.id,
          config,
          podNamespaces: sandbox.namespaces,
          podFiles: podFiles(sandbox.dir),
          podShm: sandbox.shm,
          targetPid: this.targetPid(config),
          hostname: sandbox.hostname,
          rootfs: container.rootfs,
          argv: containerArgv(config, image),
          env: containerEnv(config, image),
          cwd: containerWorkingDir(config, image),
          user: container.user,
          stateDir: container.dir,
          placeInCgroup: (pid) => this.deps.cgroups.addProcess(cgroup, pid),
        });
        const startTime = processStartTime(started.pid);
        container.process = { pid: started.pid, namespacePid: started.namespacePid, startTime: startTime ?? '' };
        container.startedAt = now();
        transition(container, 'running');
        this.watch(container, started, logs);
        await saveContainer(container);
      });
    });
    this.deps.events.publish('started', container.id, container.sandboxId);
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
    container.finishedAt = now();
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
        container.finishedAt = now();
        await saveContainer(container);
        return;
      }
      const live = this.live.get(container.id);
      const process = container.process;
      if (container.state !== 'running' || process === undefined) return;
      const signal = this.stopSignal(container);
      signalProcess(process.pid, signal);
      const exited = live?.exited ?? processGone(process.pid, process.startTime);
      const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutSeconds * 1000).then(() => true)]);
      if (timedOut) {
        log.info({ containerId: container.id, signal, timeoutSeconds }, 'container did not stop in time: SIGKILL');
        // The container's processes, not its monitor: the monitor sees the kill, records it (137,
        // also for an icetray started after it) and then goes by itself.
        signalProcess(process.namespacePid, 'SIGKILL');
        await this.killLeftovers(container, process.pid);
        await exited;
      }
    });
  }

  private stopSignal(container: Container): NodeJS.Signals {
    const image = this.deps.images.resolve(container.imageId);
    const fromImage = image?.stopSignal ?? '';
    return (fromImage !== '' ? fromImage : 'SIGTERM') as NodeJS.Signals;
  }

  /** RemoveContainer: stops it if running, then its rootfs, cgroup and state. Idempotent. */
  async remove(idOrPrefix: string): Promise<void> {
    const container = this.store.find(idOrPrefix);
    if (container === undefined) return;
    await this.stop(container.id, 0);
    await this.locks.with(container.id, async () => {
      await this.live.get(container.id)?.exited;
      if (container.cgroup !== '') {
        // SIGKILLed processes take a moment to leave their cgroup; it cannot be removed before.
        await this.killLeftovers(container);
        for (let i = 0; i < 100 && (await this.deps.cgroups.pids(container.cgroup).catch(() => [])).length > 0; i++)
          await sleep(20);
        await this.deps.cgroups.remove(container.cgroup);
      }
      await this.deps.images.releaseRootfs(container.imageId, container.id, container.dir);
      await deleteContainerDir(container);
      this.live.delete(container.id);
      this.store.delete(container.id);
      this.store.releaseName(containerName(container.sandboxId, container.config));
    });
    this.deps.events.publish('deleted', container.id, container.sandboxId);
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
    const process = await this.startExec(idOrPrefix, argv);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    process.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    process.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    // A process can exit before its last output is read: wait for both pipes to close too.
    const drained = Promise.all([streamClosed(process.stdout), streamClosed(process.stderr)]);
    process.stdin?.end();
    const timeout =
      timeoutSeconds > 0 ? sleep(timeoutSeconds * 1000).then(() => 'timeout' as const) : new Promise<never>(() => undefined);
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
    return this.deps.launcher.exec({
      containerPid: container.process.namespacePid,
      config: container.config,
      user: container.user,
      stateDir: container.dir,
      argv,
      env: containerEnv(container.config, image),
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
