import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { hostname as nodeHostname } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriverName, Config } from '../config/config.js';
import { containerCgroupPath, podCgroupPath } from '../cgroups/names.js';
import { recordDriver } from '../cgroups/state-record.js';
import { FailedPreconditionError, NotFoundError } from '../errors.js';
import { LinuxPodSandboxConfig, Protocol, type LinuxContainerResources, type PodSandboxConfig } from '../generated/api.js';
import { KeyedLock } from '../lock.js';
import { log } from '../log.js';
import { unmountAllUnder } from '../os/mount.js';
import { killAndWait, processesByEnvironment } from '../os/process-scan.js';
import { Rollback } from '../rollback.js';
import { IdStore, newId } from '../store.js';
import { nowNanos } from '../time.js';
import type { NamespacePinner } from './namespaces.js';
import type { PodAttachment, PodNetworkManager } from './network.js';
import type { PauseLauncher } from './pause.js';
import type { ShmMounter } from './shm.js';
import { writePodFiles } from './pod-files.js';
import {
  podNamespaces,
  sandboxName,
  transition,
  type PodNamespace,
  type Sandbox,
  type SandboxOperation,
  type SandboxState,
} from './sandbox.js';
import { loadSandboxes, sandboxesDir, saveSandbox } from './state.js';
import { validateSysctls } from './sysctls.js';
import { validatePodConfig } from './validate.js';

/** How long pause gets to exit on SIGTERM before SIGKILL (it exits at once; this is a bound). */
const PAUSE_GRACE_MS = 2_000;

/** The part of the cgroup driver (src/cgroups/driver.ts) a pod needs. */
export interface PodCgroups {
  readonly name: CgroupDriverName;
  createPod(spec: {
    podUid: string;
    sandboxId: string;
    cgroupParent: string;
    resources?: LinuxContainerResources | undefined;
    overhead?: LinuxContainerResources | undefined;
  }): Promise<string>;
  createContainer(podCgroup: string, id: string): Promise<string>;
  addProcess(cgroup: string, pid: number): Promise<void>;
  remove(cgroup: string): Promise<void>;
}

export interface SandboxDeps {
  config: Pick<Config, 'rootDir' | 'stateDir' | 'pauseImage' | 'runtimeHandlers'>;
  pause: PauseLauncher;
  pinner: NamespacePinner;
  shm: ShmMounter;
  network: PodNetworkManager;
  cgroups: PodCgroups;
  /** Makes sure the pause image is in the image store (pulled when it is a custom one). */
  ensurePauseImage(): Promise<unknown>;
}

export interface SandboxFilter {
  id?: string;
  state?: SandboxState;
  labelSelector?: Record<string, string>;
}

/**
 * What must happen to a pod's containers before the pod itself stops or goes (CRI: "any running
 * containers in the sandbox must be forcibly terminated"; RemovePodSandbox removes them). The
 * container service does it; the sandbox service calls it while it holds the pod alone.
 */
export type ContainersStep = (sandboxId: string) => Promise<void>;

const PROTOCOLS: Partial<Record<Protocol, string>> = { [Protocol.TCP]: 'tcp', [Protocol.UDP]: 'udp', [Protocol.SCTP]: 'sctp' };

/** What the CNI plugins are told about the pod: its netns, names (CNI_ARGS) and port mappings. */
function cniPod(sandbox: Pick<Sandbox, 'id' | 'config' | 'namespaces'>): PodAttachment {
  const m = sandbox.config.metadata;
  return {
    sandboxId: sandbox.id,
    netns: sandbox.namespaces.net ?? '',
    podName: m?.name ?? '',
    podNamespace: m?.namespace ?? '',
    podUid: m?.uid ?? '',
    portMappings: sandbox.config.portMappings
      .filter((port) => port.hostPort > 0)
      .map((port) => ({
        hostPort: port.hostPort,
        containerPort: port.containerPort,
        protocol: PROTOCOLS[port.protocol] ?? 'tcp',
        hostIP: port.hostIp,
      })),
  };
}

/**
 * Pod sandboxes: pause, pinned namespaces, the CNI network and the pod's files, kept in an
 * id store and on disk. Knows nothing of gRPC; the handlers in src/server/sandbox-*.ts call it.
 *
 * Crash safety: every operation that changes the node in several steps (run, stop, remove)
 * first writes the pod's record with the operation `pending`, naming everything it is about to
 * make, and clears it after its last step. Every undo step is idempotent — it finds what exists
 * and ignores what does not — so one `teardown` serves a failed RunPodSandbox, RemovePodSandbox,
 * and an icetray restarted after a SIGKILL at any moment (`recover`).
 */
export class SandboxService {
  readonly store = new IdStore<Sandbox>('sandbox');
  private readonly locks = new KeyedLock();
  /** Records a crash left with an operation pending: `recover` finishes or undoes them. */
  private unfinished: Sandbox[] = [];

  constructor(private readonly deps: SandboxDeps) {}

  /** Reloads the sandboxes of a previous run; a pause that died meanwhile shows NOTREADY. Call `recover` next. */
  async load(): Promise<void> {
    await this.makePrivateDirs();
    const { records, orphans } = await loadSandboxes(this.deps.config.rootDir);
    for (const sandbox of records) {
      this.store.reserveName(sandboxName(sandbox.config), sandbox.id);
      if (sandbox.pending !== undefined) this.unfinished.push(sandbox);
      // A half-run pod was never announced; a half-stopped or half-removed one still is, until recover.
      if (sandbox.pending === 'run') continue;
      this.store.add(sandbox);
      await this.refresh(sandbox);
    }
    // A folder without a record: the crash came between its mkdir and the first save.
    for (const dir of orphans) await this.removeFolders(dir.slice(dir.lastIndexOf('/') + 1));
    // Pin folders of pods with no record at all (their records' folders were removed last).
    const known = new Set(records.map((sandbox) => sandbox.id));
    const stateDirs = await readdir(join(this.deps.config.stateDir, 'sandboxes')).catch(() => []);
    for (const id of stateDirs.filter((id) => !known.has(id))) await this.removeFolders(id);
    // A pause of this icetray (its label is a sandbox folder here) that no record names.
    const folders = `${sandboxesDir(this.deps.config.rootDir)}/`;
    const stray = this.deps.pause.find((label) => label.startsWith(folders) && !known.has(label.slice(folders.length)));
    for (const pause of stray) {
      log.warn({ pid: pause.pid, label: pause.label }, 'stopping a pause no record names');
      await this.deps.pause.stop(pause, PAUSE_GRACE_MS);
    }
  }

  /**
   * Finishes what a crash interrupted, before icetray serves: a half-run pod is torn down (its
   * RunPodSandbox never answered, so no client knows its id), a half-stopped one is stopped, a
   * half-removed one removed. The pods' containers were dealt with first (ContainerService.load).
   */
  async recover(): Promise<void> {
    const unfinished = this.unfinished;
    this.unfinished = [];
    for (const sandbox of unfinished) {
      log.warn({ podSandboxId: sandbox.id, pending: sandbox.pending }, 'finishing what a crash interrupted');
      if (sandbox.pending === 'stop') await this.stopLocked(sandbox, true);
      else await this.teardown(sandbox, true);
    }
  }

  /**
   * What `recover` will do to a pod, for its containers' sake (ContainerService.load runs
   * first): 'gone' when the pod has no record or will be torn down, 'stop' when it will be
   * stopped, undefined when it stays as it is.
   */
  fateAfterCrash(sandboxId: string): 'gone' | 'stop' | undefined {
    const unfinished = this.unfinished.find((s) => s.id === sandboxId);
    if (unfinished !== undefined) return unfinished.pending === 'stop' ? 'stop' : 'gone';
    return this.store.find(sandboxId) === undefined ? 'gone' : undefined;
  }

  /** State is private (container configs hold secrets in their env): root only, as containerd keeps it. */
  private async makePrivateDirs(): Promise<void> {
    for (const dir of [this.deps.config.rootDir, this.deps.config.stateDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
    }
  }

  private pinDir(id: string): string {
    return join(this.deps.config.stateDir, 'sandboxes', id);
  }

  /** Everything a new pod will be, decided before anything is made (the record written first names it all). */
  private async plan(config: PodSandboxConfig, runtimeHandler: string, id: string): Promise<Sandbox> {
    const owned = podNamespaces(config);
    const driver = this.deps.cgroups.name;
    const cgroupParent = config.linux?.cgroupParent ?? '';
    const pod = podCgroupPath(driver, { podUid: config.metadata?.uid ?? '', sandboxId: id, cgroupParent });
    const pins = join(this.pinDir(id), 'ns');
    const namespaces: Partial<Record<PodNamespace, string>> = {};
    for (const ns of owned) namespaces[ns] = join(pins, ns);
    // A hostNetwork pod has no netns of its own, so no CNI: it uses the node's addresses.
    const conflist = namespaces.net === undefined ? undefined : await this.deps.network.choose();
    return {
      id,
      config,
      runtimeHandler,
      createdAt: nowNanos(),
      state: 'ready',
      pauseImage: this.deps.config.pauseImage,
      pause: undefined,
      namespaces,
      // Recorded before ADD, so that DEL can follow a crash in the middle of it.
      network:
        conflist === undefined ? undefined : { name: conflist.name, ip: '', additionalIps: [], result: undefined, conflist },
      hostname: owned.includes('uts') && config.hostname !== '' ? config.hostname : nodeHostname(),
      dir: join(sandboxesDir(this.deps.config.rootDir), id),
      // A pod with its own IPC namespace gets its own /dev/shm for its containers to share.
      shm: namespaces.ipc === undefined ? undefined : join(this.pinDir(id), 'shm'),
      cgroup: { pod, pause: containerCgroupPath(driver, pod, id), podOwned: cgroupParent === '' },
      pending: 'run',
    };
  }

  /** RunPodSandbox: the record first, then each step with its undo, so a failure or a crash leaves nothing. */
  async run(config: PodSandboxConfig, runtimeHandler: string): Promise<Sandbox> {
    validatePodConfig(config, runtimeHandler, this.deps.config.runtimeHandlers);
    const sysctls = validateSysctls(config.linux?.sysctls ?? {}, podNamespaces(config));
    const id = newId();
    const name = sandboxName(config);
    this.store.reserveName(name, id);
    try {
      // The first pod fixes the node's cgroup driver (checked at every start).
      await recordDriver(this.deps.config.rootDir, this.deps.cgroups.name);
      await this.deps.ensurePauseImage();
      const sandbox = await this.plan(config, runtimeHandler, id);
      await Rollback.run(async (rollback) => {
        await mkdir(sandbox.dir, { recursive: true, mode: 0o700 });
        rollback.push('remove the folders', () => this.removeFolders(id));
        await saveSandbox(sandbox);

        // The pod's cgroup, and pause's inside it as containerd places it; made before pause
        // starts so that on failure pause is stopped before its cgroup is removed. Each undo is
        // pushed before its step: a step can fail half-way, and its undo finds what it made.
        rollback.push('remove the cgroups', () => this.removeCgroups(sandbox));
        await this.deps.cgroups.createPod({
          podUid: config.metadata?.uid ?? '',
          sandboxId: id,
          cgroupParent: config.linux?.cgroupParent ?? '',
          resources: config.linux?.resources,
          overhead: config.linux?.overhead,
        });
        await this.deps.cgroups.createContainer(sandbox.cgroup.pod, id);

        rollback.push('stop pause', () => this.stopPause(sandbox));
        const owned = Object.keys(sandbox.namespaces) as PodNamespace[];
        sandbox.pause = await this.deps.pause.start({
          namespaces: owned,
          hostname: sandbox.hostname,
          sysctls,
          label: sandbox.dir,
        });
        await this.deps.cgroups.addProcess(sandbox.cgroup.pause, sandbox.pause.pid);

        rollback.push('unpin the namespaces', () => this.releaseNamespaces(sandbox));
        for (const ns of owned) await this.deps.pinner.pin(sandbox.pause.pid, ns, join(this.pinDir(id), 'ns'));
        if (sandbox.shm !== undefined) await this.deps.shm.mount(sandbox.shm);

        rollback.push('CNI DEL', () => this.releaseNetwork(sandbox));
        if (sandbox.namespaces.net !== undefined)
          sandbox.network = await this.deps.network.setUp(cniPod(sandbox), sandbox.network?.conflist);
        await writePodFiles(sandbox.dir, sandbox.hostname, config.dnsConfig, sandbox.network?.ip ?? '');

        sandbox.pending = undefined;
        await saveSandbox(sandbox);
      });
      this.store.add(sandbox);
      return sandbox;
    } catch (err) {
      this.store.releaseName(name);
      throw err;
    }
  }

  /**
   * The pod, held alone for `body` (stop, remove): container creates and starts in it wait, and
   * it waits for theirs. Nothing happens for an unknown id.
   */
  private async exclusive(idOrPrefix: string, body: (sandbox: Sandbox) => Promise<void>): Promise<void> {
    const found = this.store.find(idOrPrefix);
    if (found === undefined) return;
    await this.locks.with(found.id, async () => {
      // It may have gone while we waited (a concurrent remove): then there is nothing to do.
      if (this.store.find(found.id) === found) await body(found);
    });
  }

  /**
   * Runs `body` with a READY pod that cannot be stopped or removed meanwhile: CreateContainer
   * and StartContainer, so that no container is made or started in a pod going away.
   */
  async withReady<T>(idOrPrefix: string, body: (sandbox: Sandbox) => Promise<T>): Promise<T> {
    const sandbox = this.store.get(idOrPrefix);
    return this.locks.shared(sandbox.id, async () => {
      if (this.store.find(sandbox.id) !== sandbox) throw new FailedPreconditionError(`sandbox "${sandbox.id}" was removed`);
      await this.refresh(sandbox);
      if (sandbox.state !== 'ready') throw new FailedPreconditionError(`sandbox "${sandbox.id}" is not ready`);
      return body(sandbox);
    });
  }

  /**
   * StopPodSandbox: its containers, then the IP (CNI DEL) and pause. Idempotent: the kubelet
   * calls it repeatedly, and an unknown id is not an error (api.proto, RuntimeService.StopPodSandbox).
   */
  async stop(idOrPrefix: string, stopContainers: ContainersStep): Promise<void> {
    await this.exclusive(idOrPrefix, async (sandbox) => {
      await stopContainers(sandbox.id);
      await this.stopLocked(sandbox);
    });
  }

  private async stopLocked(sandbox: Sandbox, afterCrash = false): Promise<void> {
    await this.begin(sandbox, 'stop');
    await this.releaseNetwork(sandbox, afterCrash);
    await this.stopPause(sandbox);
    transition(sandbox, 'notready');
    await this.end(sandbox);
  }

  /** RemovePodSandbox: its containers, then everything of the pod. Idempotent, unknown ids included. */
  async remove(idOrPrefix: string, removeContainers: ContainersStep): Promise<void> {
    await this.exclusive(idOrPrefix, async (sandbox) => {
      await removeContainers(sandbox.id);
      await this.begin(sandbox, 'remove');
      await this.teardown(sandbox);
    });
  }

  /** Records that `operation` is under way: from now on a crash is finished by `recover`. */
  private async begin(sandbox: Sandbox, operation: SandboxOperation): Promise<void> {
    // A remove after an interrupted stop still finishes the stop: teardown does all of it.
    if (sandbox.pending !== 'run') sandbox.pending = operation;
    await saveSandbox(sandbox);
  }

  private async end(sandbox: Sandbox): Promise<void> {
    sandbox.pending = undefined;
    await saveSandbox(sandbox);
  }

  /**
   * Everything of a pod, undone in order — each step idempotent, for a pod made whole, half or
   * not at all: pause and the network, the namespace pins and /dev/shm, the cgroups, the
   * folders (the record last, so that until then a crash leaves the work to the next start).
   */
  private async teardown(sandbox: Sandbox, afterCrash = false): Promise<void> {
    await this.releaseNetwork(sandbox, afterCrash);
    await this.stopPause(sandbox);
    await this.releaseNamespaces(sandbox);
    await this.removeCgroups(sandbox);
    await this.removeFolders(sandbox.id);
    if (this.store.find(sandbox.id) === sandbox) this.store.delete(sandbox.id);
    this.store.releaseName(sandboxName(sandbox.config));
  }

  /** CNI DEL: frees the pod's IP, veth and host-port rules. */
  private async releaseNetwork(sandbox: Sandbox, afterCrash = false): Promise<void> {
    if (sandbox.network === undefined) return;
    // After a crash, a plugin still running (an ADD icetray never saw end) would add again
    // what DEL removes: it goes first. It carries the pod's id in its environment.
    if (afterCrash) await killAndWait(processesByEnvironment(`CNI_CONTAINERID=${sandbox.id}`));
    await this.deps.network.tearDown(cniPod(sandbox), sandbox.network);
    sandbox.network = undefined;
  }

  /** Stops pause; one whose pid a crash kept from the record is found by its label. */
  private async stopPause(sandbox: Sandbox): Promise<void> {
    const pauses = sandbox.pause !== undefined ? [sandbox.pause] : this.deps.pause.find((label) => label === sandbox.dir);
    for (const pause of pauses) await this.deps.pause.stop(pause, PAUSE_GRACE_MS);
  }

  /** The pins and /dev/shm: everything mounted in the pod's state folder. */
  private async releaseNamespaces(sandbox: Sandbox): Promise<void> {
    for (const pin of Object.values(sandbox.namespaces)) await this.deps.pinner.unpin(pin);
    if (sandbox.shm !== undefined) await this.deps.shm.unmount(sandbox.shm);
  }

  private async removeCgroups(sandbox: Sandbox): Promise<void> {
    await this.deps.cgroups.remove(sandbox.cgroup.pause);
    // A pod cgroup the kubelet named is the kubelet's: it removes it when the pod is gone.
    if (sandbox.cgroup.podOwned) await this.deps.cgroups.remove(sandbox.cgroup.pod);
  }

  /** The pod's folders under root_dir and state_dir, with anything still mounted in them. */
  private async removeFolders(id: string): Promise<void> {
    const dirs = [this.pinDir(id), join(sandboxesDir(this.deps.config.rootDir), id)];
    await unmountAllUnder(...dirs);
    // Retried: a relist that checked the pod just before may still be writing its record.
    for (const dir of dirs) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }

  /**
   * UpdatePodSandboxResources: records the pod-level resources of an in-place resize. The
   * kubelet has already written them into the pod's cgroup (CRI: "called after the Kubelet
   * reconfigures the pod-level cgroups"): the runtime keeps its copy of the config up to date.
   */
  async updateResources(
    idOrPrefix: string,
    overhead: LinuxContainerResources | undefined,
    resources: LinuxContainerResources | undefined,
  ): Promise<void> {
    const sandbox = this.store.get(idOrPrefix);
    await this.locks.with(sandbox.id, async () => {
      // A RemovePodSandbox may have gone first while this waited.
      if (this.store.find(sandbox.id) !== sandbox) throw new NotFoundError(`sandbox "${sandbox.id}" was removed`);
      const linux = sandbox.config.linux ?? LinuxPodSandboxConfig.create();
      if (overhead !== undefined) linux.overhead = overhead;
      if (resources !== undefined) linux.resources = resources;
      sandbox.config.linux = linux;
      await saveSandbox(sandbox);
    });
  }

  /** The sandbox, with its state brought up to date (a dead pause makes it NOTREADY). */
  async get(idOrPrefix: string): Promise<Sandbox> {
    const sandbox = this.store.get(idOrPrefix);
    await this.refresh(sandbox);
    return sandbox;
  }

  /** CNI CHECK of a ready pod's network (PodSandboxStatus verbose). */
  async checkNetwork(sandbox: Sandbox): Promise<void> {
    if (sandbox.state === 'ready' && sandbox.network !== undefined) {
      await this.deps.network.check(cniPod(sandbox), sandbox.network);
    }
  }

  async list(filter: SandboxFilter = {}): Promise<Sandbox[]> {
    const candidates =
      filter.id !== undefined && filter.id !== ''
        ? [this.store.find(filter.id)].filter((s) => s !== undefined)
        : this.store.all();
    // The kubelet relists every second: check the pauses concurrently, not one by one.
    await Promise.all(candidates.map((sandbox) => this.refresh(sandbox)));
    return candidates.filter((sandbox) => {
      if (filter.state !== undefined && sandbox.state !== filter.state) return false;
      const labels = sandbox.config.labels;
      return Object.entries(filter.labelSelector ?? {}).every(([key, value]) => labels[key] === value);
    });
  }

  private async refresh(sandbox: Sandbox): Promise<void> {
    // A pod being stopped or removed is its operation's to record (and its folder may be going).
    if (sandbox.state !== 'ready' || sandbox.pause === undefined || sandbox.pending !== undefined) return;
    if (await this.deps.pause.isAlive(sandbox.pause)) return;
    // A dead pause means the kubelet must recreate the pod: report NOTREADY. Its namespaces
    // stay pinned and its IP allocated until StopPodSandbox releases them.
    log.warn({ podSandboxId: sandbox.id, pid: sandbox.pause.pid }, 'the pause process of a ready sandbox is gone');
    transition(sandbox, 'notready');
    // Refreshes run outside the pod's lock (a relist must not wait for a stop): a pod removed
    // meanwhile has no folder to save into any more, and nothing to save.
    await saveSandbox(sandbox).catch((err: unknown) => {
      if (this.store.find(sandbox.id) === sandbox) throw err;
    });
  }
}
