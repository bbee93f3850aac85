import { mkdir, rm } from 'node:fs/promises';
import { hostname as nodeHostname } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriverName, Config } from '../config/config.js';
import { recordDriver } from '../cgroups/state-record.js';
import { InvalidArgumentError } from '../errors.js';
import { LinuxPodSandboxConfig, Protocol, type LinuxContainerResources, type PodSandboxConfig } from '../generated/api.js';
import { KeyedLock } from '../lock.js';
import { log } from '../log.js';
import { Rollback } from '../rollback.js';
import { IdStore, newId } from '../store.js';
import type { NamespacePinner } from './namespaces.js';
import type { PodAttachment, PodNetworkManager } from './network.js';
import type { PauseLauncher } from './pause.js';
import type { ShmMounter } from './shm.js';
import { writePodFiles } from './pod-files.js';
import { podNamespaces, sandboxName, transition, type PodNamespace, type Sandbox, type SandboxState } from './sandbox.js';
import { deleteSandboxDir, loadSandboxes, sandboxesDir, saveSandbox } from './state.js';
import { validateSysctls } from './sysctls.js';

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
  config: Pick<Config, 'rootDir' | 'stateDir' | 'pauseImage'>;
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

function validate(config: PodSandboxConfig, runtimeHandler: string): void {
  const m = config.metadata;
  if (m === undefined) throw new InvalidArgumentError('sandbox config: metadata is required');
  for (const field of ['name', 'uid', 'namespace'] as const) {
    if (m[field] === '') throw new InvalidArgumentError(`sandbox config: metadata.${field} is required`);
  }
  // icetray has one runtime handler, the default; a RuntimeClass naming another cannot be honoured.
  if (runtimeHandler !== '')
    throw new InvalidArgumentError(`runtime handler "${runtimeHandler}" is not configured (icetray has only the default "")`);
}

const PROTOCOLS: Partial<Record<Protocol, string>> = { [Protocol.TCP]: 'tcp', [Protocol.UDP]: 'udp', [Protocol.SCTP]: 'sctp' };

function attachment(sandbox: Pick<Sandbox, 'id' | 'config' | 'namespaces'>): PodAttachment {
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
 */
export class SandboxService {
  readonly store = new IdStore<Sandbox>('sandbox');
  private readonly locks = new KeyedLock();

  constructor(private readonly deps: SandboxDeps) {}

  /** Reloads the sandboxes of a previous run; a pause that died meanwhile shows NOTREADY. */
  async load(): Promise<void> {
    for (const sandbox of await loadSandboxes(this.deps.config.rootDir)) {
      this.store.add(sandbox);
      this.store.reserveName(sandboxName(sandbox.config), sandbox.id);
      await this.refresh(sandbox);
    }
  }

  private pinDir(id: string): string {
    return join(this.deps.config.stateDir, 'sandboxes', id, 'ns');
  }

  /** RunPodSandbox: every step pushes its undo, so a failure leaves nothing behind. */
  async run(config: PodSandboxConfig, runtimeHandler: string): Promise<Sandbox> {
    validate(config, runtimeHandler);
    const owned = podNamespaces(config);
    validateSysctls(config.linux?.sysctls ?? {}, owned);
    const id = newId();
    const name = sandboxName(config);

    // The first pod fixes the node's cgroup driver (checked at every start).
    await recordDriver(this.deps.config.rootDir, this.deps.cgroups.name);
    await this.deps.ensurePauseImage();
    return Rollback.run(async (rollback) => {
      this.store.reserveName(name, id);
      rollback.push('release the name', () => {
        this.store.releaseName(name);
        return Promise.resolve();
      });

      const dir = join(sandboxesDir(this.deps.config.rootDir), id);
      await mkdir(dir, { recursive: true });
      rollback.push('remove the sandbox folder', () => rm(dir, { recursive: true, force: true }));

      // The pod's cgroup, and pause's inside it as containerd places it; made before pause
      // starts so that on failure pause is stopped before its cgroup is removed.
      const podCgroup = await this.deps.cgroups.createPod({
        podUid: config.metadata?.uid ?? '',
        sandboxId: id,
        cgroupParent: config.linux?.cgroupParent ?? '',
        resources: config.linux?.resources,
        overhead: config.linux?.overhead,
      });
      rollback.push('remove the pod cgroup', () => this.deps.cgroups.remove(podCgroup));
      const pauseCgroup = await this.deps.cgroups.createContainer(podCgroup, id);
      rollback.push('remove the pause cgroup', () => this.deps.cgroups.remove(pauseCgroup));

      const hostname = owned.includes('uts') && config.hostname !== '' ? config.hostname : nodeHostname();
      const pause = await this.deps.pause.start({ namespaces: owned, hostname, sysctls: config.linux?.sysctls ?? {} });
      rollback.push('stop pause', () => this.deps.pause.stop(pause, PAUSE_GRACE_MS));
      await this.deps.cgroups.addProcess(pauseCgroup, pause.pid);

      const namespaces: Partial<Record<PodNamespace, string>> = {};
      const pinDir = this.pinDir(id);
      rollback.push('remove the pin folder', () => rm(join(pinDir, '..'), { recursive: true, force: true }));
      for (const ns of owned) {
        const pin = await this.deps.pinner.pin(pause.pid, ns, pinDir);
        namespaces[ns] = pin;
        rollback.push(`unpin ${ns}`, () => this.deps.pinner.unpin(pin));
      }

      // A pod with its own IPC namespace gets its own /dev/shm for its containers to share.
      let shm: string | undefined;
      if (namespaces.ipc !== undefined) {
        const path = join(pinDir, '..', 'shm');
        await this.deps.shm.mount(path);
        shm = path;
        rollback.push('unmount /dev/shm', () => this.deps.shm.unmount(path));
      }

      const sandbox: Sandbox = {
        id,
        config,
        runtimeHandler,
        createdAt: BigInt(Date.now()) * 1_000_000n,
        state: 'ready',
        pauseImage: this.deps.config.pauseImage,
        pause,
        namespaces,
        network: undefined,
        hostname,
        dir,
        shm,
        cgroup: { pod: podCgroup, pause: pauseCgroup },
      };
      // A hostNetwork pod has no netns of its own, so no CNI: it uses the node's addresses.
      if (namespaces.net !== undefined) {
        const network = await this.deps.network.setUp(attachment(sandbox));
        sandbox.network = network;
        rollback.push('CNI DEL', () => this.deps.network.tearDown(attachment(sandbox), network));
      }
      await writePodFiles(dir, hostname, config.dnsConfig, sandbox.network?.ip ?? '');
      await saveSandbox(sandbox);
      this.store.add(sandbox);
      return sandbox;
    });
  }

  /** StopPodSandbox: releases the IP (CNI DEL) and stops pause. Idempotent, unknown ids included. */
  async stop(idOrPrefix: string): Promise<void> {
    const found = this.store.find(idOrPrefix);
    if (found === undefined) return;
    await this.locks.with(found.id, async () => {
      if (found.network !== undefined && found.namespaces.net !== undefined) {
        await this.deps.network.tearDown(attachment(found), found.network);
        found.network = undefined;
      }
      if (found.pause !== undefined) await this.deps.pause.stop(found.pause, PAUSE_GRACE_MS);
      transition(found, 'notready');
      await saveSandbox(found);
    });
  }

  /** RemovePodSandbox: stops if needed, then releases the pinned namespaces and all state. Idempotent. */
  async remove(idOrPrefix: string): Promise<void> {
    const found = this.store.find(idOrPrefix);
    if (found === undefined) return;
    await this.stop(found.id);
    await this.locks.with(found.id, async () => {
      for (const pin of Object.values(found.namespaces)) await this.deps.pinner.unpin(pin);
      if (found.shm !== undefined) await this.deps.shm.unmount(found.shm);
      await this.deps.cgroups.remove(found.cgroup.pause);
      await this.deps.cgroups.remove(found.cgroup.pod);
      await rm(join(this.pinDir(found.id), '..'), { recursive: true, force: true });
      await deleteSandboxDir(found);
      this.store.delete(found.id);
      this.store.releaseName(sandboxName(found.config));
    });
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
      await this.deps.network.check(attachment(sandbox), sandbox.network);
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
    if (sandbox.state !== 'ready' || sandbox.pause === undefined) return;
    if (await this.deps.pause.isAlive(sandbox.pause)) return;
    // A dead pause means the kubelet must recreate the pod: report NOTREADY. Its namespaces
    // stay pinned and its IP allocated until StopPodSandbox releases them.
    log.warn({ podSandboxId: sandbox.id, pid: sandbox.pause.pid }, 'the pause process of a ready sandbox is gone');
    transition(sandbox, 'notready');
    await saveSandbox(sandbox);
  }
}
