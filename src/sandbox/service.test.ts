import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError } from '../errors.js';
import { PodSandboxConfig } from '../generated/api.js';
import type { NamespacePinner } from './namespaces.js';
import type { Conflist, PodNetworkManager } from './network.js';
import type { PauseLauncher } from './pause.js';
import type { PauseProcess } from './sandbox.js';
import { SandboxService, type PodCgroups, type SandboxDeps } from './service.js';

/** The steps of RunPodSandbox a fake can fail or hang at. */
const STEPS = ['createPod', 'createContainer', 'pause', 'pin', 'shm', 'cni'] as const;
type Step = (typeof STEPS)[number];

interface Faults {
  /** This step throws. */
  fail?: Step | undefined;
  /** This step never returns, as if icetray were killed in the middle of it (after it took effect). */
  hang?: Step | undefined;
}

const CONFLIST: Conflist = { cniVersion: '1.0.0', name: 'test', plugins: [{ type: 'bridge' }] };

/**
 * Fakes that record what is alive on the "node", shared by every service built on them — so a
 * test can see what a failed or crashed create left behind, and what a restarted one cleaned up.
 */
function node() {
  const live = {
    pauses: new Map<number, string>(),
    pins: new Set<string>(),
    shms: new Set<string>(),
    networks: new Set<string>(),
    cgroups: new Set<string>(),
  };
  let nextPid = 1000;
  const faults: Faults = {};
  /** Applies a fault to a step that has just taken effect. */
  const step = async (name: Step): Promise<void> => {
    if (faults.fail === name) throw new UnavailableError(`${name} failed`);
    if (faults.hang === name) await new Promise(() => undefined);
  };
  const pause: PauseLauncher = {
    start: async (spec) => {
      const p: PauseProcess = { pid: nextPid++, startTime: '1' };
      live.pauses.set(p.pid, spec.label);
      await step('pause');
      return p;
    },
    find: (matches) => [...live.pauses].filter(([, l]) => matches(l)).map(([pid, label]) => ({ pid, startTime: '1', label })),
    isAlive: (p) => Promise.resolve(live.pauses.has(p.pid)),
    stop: (p) => Promise.resolve(void live.pauses.delete(p.pid)),
  };
  const pinner: NamespacePinner = {
    pin: async (_pid, ns, dir) => {
      live.pins.add(join(dir, ns));
      await step('pin');
      return join(dir, ns);
    },
    unpin: (path) => Promise.resolve(void live.pins.delete(path)),
  };
  const shm = {
    mount: async (path: string) => {
      live.shms.add(path);
      await step('shm');
    },
    unmount: (path: string) => Promise.resolve(void live.shms.delete(path)),
  };
  const network: PodNetworkManager = {
    choose: () => Promise.resolve(CONFLIST),
    setUp: async (pod, conflist) => {
      live.networks.add(pod.sandboxId);
      await step('cni');
      return { name: 'test', ip: '10.0.0.2', additionalIps: [], result: {}, conflist };
    },
    check: () => Promise.resolve(),
    tearDown: (pod) => Promise.resolve(void live.networks.delete(pod.sandboxId)),
  };
  const cgroups: PodCgroups = {
    name: 'cgroupfs',
    createPod: async (spec) => {
      const path = `/kubepods/burstable/pod${spec.podUid}`;
      live.cgroups.add(path);
      await step('createPod');
      return path;
    },
    createContainer: async (pod, id) => {
      live.cgroups.add(`${pod}/${id}`);
      await step('createContainer');
      return `${pod}/${id}`;
    },
    addProcess: () => Promise.resolve(),
    remove: (cgroup) => Promise.resolve(void live.cgroups.delete(cgroup)),
  };
  const deps: Omit<SandboxDeps, 'config'> = { pause, pinner, shm, network, cgroups, ensurePauseImage: () => Promise.resolve() };
  const nothingLeft = () => ({ pauses: new Map(), pins: new Set(), shms: new Set(), networks: new Set(), cgroups: new Set() });
  return { live, faults, deps, nothingLeft };
}

const tempDir = useTempDirs('icetray-sandbox-');

async function setUp() {
  const dir = await tempDir();
  const n = node();
  const config = {
    rootDir: join(dir, 'root'),
    stateDir: join(dir, 'state'),
    pauseImage: 'registry.k8s.io/pause:3.10',
    runtimeHandlers: [''],
  };
  /** A service as a (re)started icetray builds it: load, then recover. */
  const start = async () => {
    const sandboxes = new SandboxService({ config, ...n.deps });
    await sandboxes.load();
    await sandboxes.recover();
    return sandboxes;
  };
  const folders = async () => ({
    root: await readdir(join(config.rootDir, 'sandboxes')).catch(() => []),
    state: await readdir(join(config.stateDir, 'sandboxes')).catch(() => []),
  });
  return { ...n, config, start, folders, sandboxes: await start() };
}

const pod = (name = 'web') =>
  PodSandboxConfig.fromPartial({ metadata: { name, namespace: 'default', uid: `uid-${name}`, attempt: 1 } });
const noContainers = () => Promise.resolve();

describe('SandboxService', () => {
  it.each(STEPS)('undoes every step when %s fails: nothing, not even the name, is left', async (failing) => {
    const s = await setUp();
    s.faults.fail = failing;
    await expect(s.sandboxes.run(pod(), '')).rejects.toThrow(`${failing} failed`);
    expect(s.live).toEqual(s.nothingLeft());
    expect(await s.folders()).toEqual({ root: [], state: [] });
    // The name was released: a retry works.
    s.faults.fail = undefined;
    await expect(s.sandboxes.run(pod(), '')).resolves.toBeDefined();
  });

  it.each(STEPS)('after a crash in %s, a restarted service removes the half-made pod before it serves', async (hanging) => {
    const s = await setUp();
    s.faults.hang = hanging;
    void s.sandboxes.run(pod(), '');
    await sleep(20);
    expect(s.live.cgroups.size).toBeGreaterThan(0);
    s.faults.hang = undefined;
    const restarted = await s.start();
    expect(s.live).toEqual(s.nothingLeft());
    expect(await s.folders()).toEqual({ root: [], state: [] });
    expect(await restarted.list()).toEqual([]);
    // Its name is free again: the kubelet's retry of RunPodSandbox is not AlreadyExists.
    await expect(restarted.run(pod(), '')).resolves.toBeDefined();
  });

  it('stops a pause of its own that no record names (its label is a sandbox folder of this root)', async () => {
    const s = await setUp();
    const orphan = await s.deps.pause.start({
      namespaces: [],
      hostname: '',
      sysctls: {},
      label: join(s.config.rootDir, 'sandboxes', 'f'.repeat(64)),
    });
    const other = await s.deps.pause.start({ namespaces: [], hostname: '', sysctls: {}, label: '/another/icetray/sandboxes/x' });
    await s.start();
    expect([...s.live.pauses.keys()]).toEqual([other.pid]);
    expect(s.live.pauses.has(orphan.pid)).toBe(false);
  });

  it('after a crash in RemovePodSandbox, a restarted service finishes the removal', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    const stopPause = s.deps.pause.stop.bind(s.deps.pause);
    s.deps.pause.stop = () => new Promise(() => undefined);
    void s.sandboxes.remove(sandbox.id, noContainers);
    await sleep(20);
    s.deps.pause.stop = stopPause;
    const restarted = await s.start();
    expect(s.live).toEqual(s.nothingLeft());
    expect(await restarted.list()).toEqual([]);
  });

  it('after a crash in StopPodSandbox, a restarted service finishes the stop and keeps the pod', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    const tearDown = s.deps.network.tearDown.bind(s.deps.network);
    s.deps.network.tearDown = () => new Promise(() => undefined);
    void s.sandboxes.stop(sandbox.id, noContainers);
    await sleep(20);
    s.deps.network.tearDown = tearDown;
    const restarted = await s.start();
    const [after] = await restarted.list();
    expect(after?.state).toBe('notready');
    expect(s.live.pauses.size).toBe(0);
    expect(s.live.networks.size).toBe(0);
    expect(s.live.pins.size).toBe(4);
  });

  it('reserves (name, namespace, uid, attempt): the same pod twice is AlreadyExists', async () => {
    const s = await setUp();
    await s.sandboxes.run(pod(), '');
    await expect(s.sandboxes.run(pod(), '')).rejects.toThrow(AlreadyExistsError);
    const next = pod();
    next.metadata = { ...next.metadata, name: 'web', namespace: 'default', uid: 'uid-web', attempt: 2 };
    await expect(s.sandboxes.run(next, '')).resolves.toBeDefined();
  });

  it('owns net, uts, ipc and pid by default and pins each', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    expect(Object.keys(sandbox.namespaces).sort()).toEqual(['ipc', 'net', 'pid', 'uts']);
    expect(s.live.pins.size).toBe(4);
  });

  it('keeps the CNI config ADD used with the pod, for DEL and CHECK', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    expect(sandbox.network?.conflist).toEqual(CONFLIST);
  });

  it('rejects an unknown runtime handler', async () => {
    const s = await setUp();
    await expect(s.sandboxes.run(pod(), 'kata')).rejects.toThrow(NotFoundError);
  });

  it('reloads sandboxes from disk, with config and times intact', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    const again = await s.start();
    const reloaded = await again.get(sandbox.id.slice(0, 8));
    expect(reloaded.config).toEqual(sandbox.config);
    expect(reloaded.createdAt).toBe(sandbox.createdAt);
    expect(reloaded.state).toBe('ready');
    // A reloaded pod keeps its name reserved.
    await expect(again.run(pod(), '')).rejects.toThrow(AlreadyExistsError);
  });

  it('removes everything on RemovePodSandbox, stopping first', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    await s.sandboxes.remove(sandbox.id, noContainers);
    expect(s.live).toEqual(s.nothingLeft());
    expect(await s.sandboxes.list()).toEqual([]);
    expect(await s.folders()).toEqual({ root: [], state: [] });
  });

  it('leaves a pod cgroup the kubelet named to the kubelet', async () => {
    const s = await setUp();
    const config = PodSandboxConfig.fromPartial({ ...pod(), linux: { cgroupParent: '/kubepods/burstable/poduid-web' } });
    const sandbox = await s.sandboxes.run(config, '');
    await s.sandboxes.remove(sandbox.id, noContainers);
    expect([...s.live.cgroups]).toEqual(['/kubepods/burstable/poduid-web']);
  });

  it('lets RemovePodSandbox wait for a container create in flight, and refuses creates once it has begun', async () => {
    const s = await setUp();
    const sandbox = await s.sandboxes.run(pod(), '');
    const order: string[] = [];
    const creating = s.sandboxes.withReady(sandbox.id, async () => {
      await sleep(30);
      order.push('created');
    });
    const removing = s.sandboxes.remove(sandbox.id, () => Promise.resolve(void order.push('containers removed')));
    const late = s.sandboxes.withReady(sandbox.id, () => Promise.resolve(order.push('late create')));
    await creating;
    await removing;
    await expect(late).rejects.toThrow(FailedPreconditionError);
    expect(order).toEqual(['created', 'containers removed']);
  });
});
