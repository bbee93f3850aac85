import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { readFile, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAlive } from '../../test/helpers/pods.js';
import { useTempDirs } from '../../test/helpers/temp.js';
import { DeadlineExceededError, FailedPreconditionError, NotFoundError } from '../errors.js';
import { ContainerEvents, type ContainerEventType } from '../events.js';
import { ContainerConfig, PodSandboxConfig } from '../generated/api.js';
import { SandboxService } from '../sandbox/service.js';
import { parseLogEntry } from './logs.js';
import type { CgroupPort, ImagePort, LauncherPort, RunningProcess } from './ports.js';
import { toContainerStatus, toCriContainer } from '../server/container-convert.js';
import { ContainerService } from './service.js';

/**
 * The lifecycle on fakes: the "launcher" runs the command as a plain host process (no
 * namespaces), so these tests check states, logs, exits, events and clean-up, not isolation
 * (test/containers.test.ts does that on the real kernel).
 */
function hostProcess(argv: string[]): RunningProcess {
  const child = spawn(argv[0] ?? 'false', argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  // Output waits to be read, as in the launcher's kernel pipes (Node drops a child's unread output at its exit).
  return {
    pid: child.pid ?? 0,
    namespacePid: child.pid ?? 0,
    stdout: child.stdout.pipe(new PassThrough()),
    stderr: child.stderr.pipe(new PassThrough()),
    stdin: child.stdin,
    resize: undefined,
    oomScoreAdj: 0,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) =>
        resolve({ exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), signal: signal ?? undefined }),
      );
    }),
  };
}

const tempDir = useTempDirs('icetray-containers-');

async function setUp() {
  const dir = await tempDir();
  const events = new ContainerEvents();
  const seen: ContainerEventType[] = [];
  events.subscribe((event) => seen.push(event.type));
  const cgroups = new Set<string>();
  const rootfses = new Set<string>();
  const sandboxes = new SandboxService({
    config: { rootDir: join(dir, 'root'), stateDir: join(dir, 'state'), pauseImage: 'pause', runtimeHandlers: [''] },
    pause: {
      start: () => Promise.resolve({ pid: process.pid, startTime: 'x' }),
      find: () => [],
      isAlive: () => Promise.resolve(true),
      stop: () => Promise.resolve(),
    },
    pinner: { pin: (_pid, ns, d) => Promise.resolve(join(d, ns)), unpin: () => Promise.resolve() },
    shm: { mount: () => Promise.resolve(), unmount: () => Promise.resolve() },
    ensurePauseImage: () => Promise.resolve(),
    cgroups: {
      name: 'cgroupfs',
      createPod: () => Promise.resolve('/pod'),
      createContainer: () => Promise.resolve('/pod/pause'),
      addProcess: () => Promise.resolve(),
      remove: () => Promise.resolve(),
    },
    network: {
      choose: () => Promise.resolve(undefined),
      setUp: () => Promise.resolve({ name: '', ip: '', additionalIps: [], result: undefined }),
      check: () => Promise.resolve(),
      tearDown: () => Promise.resolve(),
    },
  });
  const images: ImagePort = {
    resolve: (ref) =>
      ref === 'busybox' || ref === 'sha256:busybox'
        ? {
            id: 'sha256:busybox',
            entrypoint: [],
            cmd: ['sh'],
            env: [],
            workingDir: '',
            user: '',
            stopSignal: '',
            repoTags: ['docker.io/library/busybox:1.36'],
            repoDigests: ['docker.io/library/busybox@sha256:b0b'],
          }
        : undefined,
    createRootfs: (_image, id) => Promise.resolve(void rootfses.add(id)).then(() => `/rootfs/${id}`),
    releaseRootfs: (_image, id) => Promise.resolve(void rootfses.delete(id)),
  };
  /** cgroup → the pids placed in it (the live ones are its processes). */
  const members = new Map<string, number[]>();
  const cgroupPort: CgroupPort = {
    createContainer: (_pod, id) => Promise.resolve(void cgroups.add(`/pod/${id}`)).then(() => `/pod/${id}`),
    addProcess: (cgroup, pid) => Promise.resolve(void members.set(cgroup, [...(members.get(cgroup) ?? []), pid])),
    update: () => Promise.resolve(),
    pids: (cgroup) => Promise.resolve((members.get(cgroup) ?? []).filter(isAlive)),
    oomKilled: () => Promise.resolve(false),
    remove: (id) => Promise.resolve(void cgroups.delete(id)),
  };
  const launcher: LauncherPort = {
    start: async (request) => {
      const started = hostProcess(request.argv);
      await request.placeInCgroup(started.pid);
      return started;
    },
    exec: (request) => Promise.resolve(hostProcess(request.argv)),
    reattach: () => undefined,
    lastExit: () => Promise.resolve(undefined),
  };
  const deps = {
    config: { rootDir: join(dir, 'root') },
    sandboxes,
    images,
    cgroups: cgroupPort,
    launcher,
    events,
    cgroupOf: (_sandbox: unknown, id: string) => `/pod/${id}`,
  };
  const containers = new ContainerService(deps);
  /** A new service over the same state, as a restarted icetray; `found` plays what it finds of the processes. */
  const restart = async (found: Partial<LauncherPort> = {}): Promise<ContainerService> => {
    const again = new ContainerService({ ...deps, launcher: { ...launcher, ...found } });
    await again.load();
    return again;
  };
  const pod = await sandboxes.run(
    PodSandboxConfig.fromPartial({ metadata: { name: 'p', namespace: 'n', uid: 'u' }, logDirectory: join(dir, 'logs') }),
    '',
  );
  const config = (command: string[], name = 'c') =>
    ContainerConfig.fromPartial({ metadata: { name }, image: { image: 'busybox' }, command, logPath: `${name}.log` });
  return { dir, containers, pod, config, seen, cgroups, rootfses, restart, images, launcher, sandboxes };
}

describe('ContainerService lifecycle', () => {
  it('runs created → running → exited, logs in the CRI format, and records the exit', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sh', '-c', 'echo hello World; echo oops >&2; exit 3']));
    expect(c.state).toBe('created');
    await s.containers.start(c.id);
    for (let i = 0; i < 100 && !s.seen.includes('stopped'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(c).toMatchObject({ state: 'exited', exitCode: 3, reason: 'Error' });
    expect(c.finishedAt).toBeGreaterThanOrEqual(c.startedAt);
    const lines = (await readFile(join(s.dir, 'logs', 'c.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => parseLogEntry(l));
    expect(lines.map((l) => [l?.stream, l?.text]).sort()).toEqual([
      ['stderr', 'oops'],
      ['stdout', 'hello World'],
    ]);
    expect(s.seen).toEqual(['created', 'started', 'stopped']);
  });

  it('stops a container that ignores SIGTERM with SIGKILL after the timeout: 137', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sh', '-c', "trap '' TERM; while :; do sleep 0.1; done"]));
    await s.containers.start(c.id);
    await new Promise((r) => setTimeout(r, 100));
    await s.containers.stop(c.id, 1);
    expect(c).toMatchObject({ state: 'exited', exitCode: 137 });
  });

  it('removes a running container with everything it had; remove and stop are idempotent', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sleep', '30']));
    await s.containers.start(c.id);
    await s.containers.remove(c.id);
    await s.containers.remove(c.id);
    await s.containers.stop(c.id, 0);
    expect(s.cgroups.size).toBe(0);
    expect(s.rootfses.size).toBe(0);
    expect(s.containers.list()).toEqual([]);
    await expect(s.containers.get(c.id)).rejects.toThrow(NotFoundError);
    expect(s.seen).toEqual(['created', 'started', 'stopped', 'deleted']);
  });

  it('refuses the same name and attempt twice in a pod, and an unknown image', async () => {
    const s = await setUp();
    await s.containers.create(s.pod.id, s.config(['true']));
    await expect(s.containers.create(s.pod.id, s.config(['true']))).rejects.toThrow(/reserved/);
    const unknown = ContainerConfig.fromPartial({ metadata: { name: 'x' }, image: { image: 'nope' } });
    await expect(s.containers.create(s.pod.id, unknown)).rejects.toThrow(NotFoundError);
  });

  it('ExecSync returns output and exit code, and kills the command on timeout', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sleep', '30']));
    await s.containers.start(c.id);
    const result = await s.containers.execSync(c.id, ['sh', '-c', 'printf hello; exit 2'], 5);
    expect(result).toMatchObject({ exitCode: 2 });
    expect(result.stdout.toString()).toBe('hello');
    await expect(s.containers.execSync(c.id, ['sleep', '4321'], 1)).rejects.toThrow(DeadlineExceededError);
    await s.containers.remove(c.id);
    await expect(s.containers.execSync(c.id, ['true'], 1)).rejects.toThrow(NotFoundError);
  });

  it('after a restart, records the exit a monitor left, watches a container still running, and says when it cannot know', async () => {
    const s = await setUp();
    const [ended, running, lost] = await Promise.all(
      ['ended', 'running', 'lost'].map((name) => s.containers.create(s.pod.id, s.config(['sleep', '30'], name))),
    );
    for (const c of [ended, running, lost]) await s.containers.start(c?.id ?? '');
    const again = await s.restart({
      // Only `running` still runs: the new run reads its output and waits for its end.
      reattach: (process) =>
        process.pid === running?.process?.pid ? hostProcess(['sh', '-c', 'echo still here; exit 4']) : undefined,
      // `ended` left "exit 3" in its folder; `lost` left nothing.
      lastExit: (dir) => Promise.resolve(dir === ended?.dir ? { exitCode: 3, signal: undefined } : undefined),
    });
    expect(await again.get(ended?.id ?? '')).toMatchObject({ state: 'exited', exitCode: 3, reason: 'Error' });
    expect(await again.get(lost?.id ?? '')).toMatchObject({ state: 'exited', exitCode: -1, reason: 'Unknown' });
    const watched = await again.get(running?.id ?? '');
    for (let i = 0; i < 100 && watched.state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(watched).toMatchObject({ state: 'exited', exitCode: 4, reason: 'Error' });
    expect(await readFile(join(s.dir, 'logs', 'running.log'), 'utf8')).toMatch(/ stdout F still here\n$/);
    for (const c of [ended, running, lost]) await s.containers.remove(c?.id ?? '');
  });

  it('refuses to start a container twice or to reopen the log of one that is not running', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['true']));
    await expect(s.containers.reopenLog(c.id)).rejects.toThrow(FailedPreconditionError);
    await s.containers.start(c.id);
    await expect(s.containers.start(c.id)).rejects.toThrow(FailedPreconditionError);
  });
});

describe('the image a container reports (issue #16: the kubelet waits for the name the user wrote)', () => {
  it('names the image by what the user wrote, else its first tag, and its repo digest — not the id CreateContainer got', async () => {
    const s = await setUp();
    const byId = await s.containers.create(
      s.pod.id,
      ContainerConfig.fromPartial({ metadata: { name: 'a' }, image: { image: 'sha256:busybox' }, command: ['true'] }),
    );
    expect(toContainerStatus(byId)).toMatchObject({
      image: { image: 'docker.io/library/busybox:1.36' },
      imageRef: 'docker.io/library/busybox@sha256:b0b',
      imageId: 'sha256:busybox',
    });
    const named = await s.containers.create(
      s.pod.id,
      ContainerConfig.fromPartial({
        metadata: { name: 'b' },
        image: { image: 'sha256:busybox', userSpecifiedImage: 'busybox' },
        command: ['true'],
      }),
    );
    expect(toContainerStatus(named).image?.image).toBe('busybox');
    expect(toCriContainer(named).image?.image).toBe('busybox');
    // A tag given as the reference is the one reported, whatever other tags the image has.
    const tagged = await s.containers.create(
      s.pod.id,
      ContainerConfig.fromPartial({ metadata: { name: 'c' }, image: { image: 'busybox' }, command: ['true'] }),
    );
    expect(toContainerStatus(tagged).image?.image).toBe('busybox');
  });
});

describe('ContainerService after a crash (nothing half-made survives a restart)', () => {
  const hang = () => new Promise<never>(() => undefined);

  it('undoes a CreateContainer cut short: no folder, no rootfs, and the name is free', async () => {
    const s = await setUp();
    const createRootfs = s.images.createRootfs.bind(s.images);
    s.images.createRootfs = async (image, id, dir) => {
      await createRootfs(image, id, dir);
      return hang();
    };
    void s.containers.create(s.pod.id, s.config(['true']));
    await sleep(30);
    s.images.createRootfs = createRootfs;
    const again = await s.restart();
    expect(s.rootfses.size).toBe(0);
    expect(await readdir(join(s.dir, 'root', 'containers'))).toEqual([]);
    expect(again.list()).toEqual([]);
    await expect(again.create(s.pod.id, s.config(['true']))).resolves.toBeDefined();
  });

  it('undoes a StartContainer cut short: the process it started is killed, its cgroup removed, the container CREATED', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sleep', '30']));
    let started: RunningProcess | undefined;
    const start = s.launcher.start.bind(s.launcher);
    s.launcher.start = async (request) => {
      started = await start(request);
      return hang();
    };
    void s.containers.start(c.id);
    for (let i = 0; i < 100 && started === undefined; i++) await sleep(10);
    s.launcher.start = start;
    const again = await s.restart();
    expect(isAlive(started?.pid ?? 0)).toBe(false);
    expect(s.cgroups.size).toBe(0);
    const after = await again.get(c.id);
    expect(after).toMatchObject({ state: 'created', cgroup: '', pending: undefined });
    // And it can be started for real now.
    await again.start(c.id);
    expect((await again.get(c.id)).state).toBe('running');
    await again.remove(c.id);
  });

  it('finishes a RemoveContainer cut short', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sleep', '30']));
    const release = s.images.releaseRootfs.bind(s.images);
    s.images.releaseRootfs = hang;
    void s.containers.remove(c.id);
    await sleep(30);
    s.images.releaseRootfs = release;
    const again = await s.restart();
    expect(again.list()).toEqual([]);
    expect(s.rootfses.size).toBe(0);
  });

  it('removes the containers of a pod that is gone', async () => {
    const s = await setUp();
    const c = await s.containers.create(s.pod.id, s.config(['sleep', '30']));
    await s.containers.start(c.id);
    s.sandboxes.store.delete(s.pod.id);
    const again = await s.restart();
    expect(again.list()).toEqual([]);
    expect(isAlive(c.process?.pid ?? 0)).toBe(false);
  });
});

describe('ContainerService against a pod being removed', () => {
  it('never leaves a container in a removed pod, whichever wins the race', async () => {
    const s = await setUp();
    const creates = Array.from({ length: 5 }, (_, i) =>
      s.containers.create(s.pod.id, s.config(['sleep', '30'], `c${String(i)}`)).then(
        (c) => s.containers.start(c.id),
        (err: unknown) => err,
      ),
    );
    await sleep(1);
    await s.sandboxes.remove(s.pod.id, (id) => s.containers.stopAll(id, true));
    const outcomes = await Promise.allSettled(creates);
    // Each create either finished before the removal (and was removed with the pod) or was refused.
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled' && outcome.value !== undefined)
        expect(outcome.value).toBeInstanceOf(FailedPreconditionError);
    }
    expect(s.containers.list()).toEqual([]);
    expect(s.rootfses.size).toBe(0);
    expect(s.cgroups.size).toBe(0);
  });
});
