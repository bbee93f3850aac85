import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { AlreadyExistsError, InvalidArgumentError, UnavailableError } from '../errors.js';
import { PodSandboxConfig } from '../generated/api.js';
import type { NamespacePinner } from './namespaces.js';
import type { PodNetworkManager } from './network.js';
import type { PauseLauncher } from './pause.js';
import type { PauseProcess } from './sandbox.js';
import { SandboxService, type PodCgroups } from './service.js';

/** Fakes that record what is alive, so a test can see what a failed create left behind. */
function fakes(options: { failNetwork?: boolean } = {}) {
  const live = { pauses: new Set<number>(), pins: new Set<string>(), networks: new Set<string>(), cgroups: new Set<string>() };
  let nextPid = 1000;
  const pause: PauseLauncher = {
    start: () => {
      const p: PauseProcess = { pid: nextPid++, startTime: '1' };
      live.pauses.add(p.pid);
      return Promise.resolve(p);
    },
    isAlive: (p) => Promise.resolve(live.pauses.has(p.pid)),
    stop: (p) => Promise.resolve(void live.pauses.delete(p.pid)),
  };
  const pinner: NamespacePinner = {
    pin: (pid, ns, dir) => {
      const path = join(dir, `${ns}-${pid}`);
      live.pins.add(path);
      return Promise.resolve(path);
    },
    unpin: (path) => Promise.resolve(void live.pins.delete(path)),
  };
  const network: PodNetworkManager = {
    setUp: (pod) => {
      if (options.failNetwork === true) return Promise.reject(new UnavailableError('CNI ADD failed'));
      live.networks.add(pod.sandboxId);
      return Promise.resolve({ name: 'test', ip: '10.0.0.2', additionalIps: [], result: {} });
    },
    check: () => Promise.resolve(),
    tearDown: (pod) => Promise.resolve(void live.networks.delete(pod.sandboxId)),
  };
  const shm = { mount: () => Promise.resolve(), unmount: () => Promise.resolve() };
  const cgroups: PodCgroups = {
    name: 'cgroupfs',
    createPod: (spec) => Promise.resolve(void live.cgroups.add(`pod-${spec.sandboxId}`)).then(() => `pod-${spec.sandboxId}`),
    createContainer: (pod, id) => Promise.resolve(void live.cgroups.add(`${pod}/${id}`)).then(() => `${pod}/${id}`),
    addProcess: () => Promise.resolve(),
    remove: (cgroup) => Promise.resolve(void live.cgroups.delete(cgroup)),
  };
  return { live, pause, pinner, shm, network, cgroups, ensurePauseImage: () => Promise.resolve() };
}

const tempDir = useTempDirs('icetray-sandbox-');

async function service(options: { failNetwork?: boolean } = {}) {
  const dir = await tempDir();
  const f = fakes(options);
  const config = { rootDir: join(dir, 'root'), stateDir: join(dir, 'state'), pauseImage: 'registry.k8s.io/pause:3.10' };
  return {
    dir,
    config,
    ...f,
    sandboxes: new SandboxService({
      config,
      pause: f.pause,
      pinner: f.pinner,
      shm: f.shm,
      network: f.network,
      cgroups: f.cgroups,
      ensurePauseImage: f.ensurePauseImage,
    }),
  };
}

const pod = (name = 'web') =>
  PodSandboxConfig.fromPartial({ metadata: { name, namespace: 'default', uid: `uid-${name}`, attempt: 1 } });

describe('SandboxService', () => {
  it('undoes every step when CNI ADD fails: no pause, pin, folder or name is left', async () => {
    const s = await service({ failNetwork: true });
    await expect(s.sandboxes.run(pod(), '')).rejects.toThrow('CNI ADD failed');
    expect(s.live.pauses.size).toBe(0);
    expect(s.live.pins.size).toBe(0);
    expect(s.live.cgroups.size).toBe(0);
    expect(await readdir(join(s.config.rootDir, 'sandboxes'))).toEqual([]);
    // The name was released: a retry is not AlreadyExists (it fails on CNI again instead).
    await expect(s.sandboxes.run(pod(), '')).rejects.toThrow(UnavailableError);
  });

  it('reserves (name, namespace, uid, attempt): the same pod twice is AlreadyExists', async () => {
    const s = await service();
    await s.sandboxes.run(pod(), '');
    await expect(s.sandboxes.run(pod(), '')).rejects.toThrow(AlreadyExistsError);
    const next = pod();
    next.metadata = { ...next.metadata, name: 'web', namespace: 'default', uid: 'uid-web', attempt: 2 };
    await expect(s.sandboxes.run(next, '')).resolves.toBeDefined();
  });

  it('owns net, uts, ipc and pid by default and pins each', async () => {
    const s = await service();
    const sandbox = await s.sandboxes.run(pod(), '');
    expect(Object.keys(sandbox.namespaces).sort()).toEqual(['ipc', 'net', 'pid', 'uts']);
    expect(s.live.pins.size).toBe(4);
  });

  it('rejects an unknown runtime handler', async () => {
    const s = await service();
    await expect(s.sandboxes.run(pod(), 'kata')).rejects.toThrow(InvalidArgumentError);
  });

  it('reloads sandboxes from disk, with config and times intact', async () => {
    const s = await service();
    const sandbox = await s.sandboxes.run(pod(), '');
    const again = new SandboxService({
      config: s.config,
      pause: s.pause,
      pinner: s.pinner,
      shm: s.shm,
      network: s.network,
      cgroups: s.cgroups,
      ensurePauseImage: s.ensurePauseImage,
    });
    await again.load();
    const reloaded = await again.get(sandbox.id.slice(0, 8));
    expect(reloaded.config).toEqual(sandbox.config);
    expect(reloaded.createdAt).toBe(sandbox.createdAt);
    expect(reloaded.state).toBe('ready');
    // A reloaded pod keeps its name reserved.
    await expect(again.run(pod(), '')).rejects.toThrow(AlreadyExistsError);
  });

  it('removes everything on RemovePodSandbox, stopping first', async () => {
    const s = await service();
    const sandbox = await s.sandboxes.run(pod(), '');
    await s.sandboxes.remove(sandbox.id);
    expect(s.live).toEqual({ pauses: new Set(), pins: new Set(), networks: new Set(), cgroups: new Set() });
    expect(await s.sandboxes.list()).toEqual([]);
  });
});
