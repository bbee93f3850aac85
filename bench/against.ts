import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { connectCri, type CriClient } from '../src/cli/cri-client.js';
import { ContainerConfig, PodSandboxConfig } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { run } from '../src/os/exec.js';
import { PACKAGE_ROOT, PAUSE_BINARY } from '../src/paths.js';
import { defaultConflist } from '../src/sandbox/network.js';
import { CONTAINERD_BIN, startContainerd } from './containerd.js';
import { cpuMs, descendants, memoryOf, processes, serveIcetray, stopChild } from './daemon.js';
import { Floor, type FloorPod } from './floor.js';
import {
  addSample,
  kib,
  latencyTable,
  memoryTable,
  perPod,
  summarize,
  summarizeAll,
  sumMemory,
  type PodMemory,
  type Samples,
  type Summary,
  type Target,
} from './report.js';
import { formatTable, ms, ratio, type Memory } from './stats.js';

/** What `npm run bench -- --against containerd` is asked to do. */
export interface AgainstOptions {
  /** Interleaved rounds of one-at-a-time pod lifecycles. */
  rounds: number;
  /** Pods per runtime per round. */
  pods: number;
  /** Live pods (each with a container) for ListPodSandbox and memory. */
  listPods: number;
  /** Concurrent clients, and lifecycles each, for throughput. */
  clients: number;
  perClient: number;
  json: string;
}

type Runtime = 'icetray' | 'containerd';

/** One runtime under test: its own dirs, bridge, subnet and cgroup parent, reached over its socket. */
interface Side {
  name: Runtime;
  dir: string;
  socket: string;
  daemon: ChildProcess;
  cri: CriClient;
  cgroup: string;
}

const NETWORKS = {
  icetray: { bridge: 'itbench-ice0', subnet: '10.241.0.0/24', cgroup: 'itbench-ice' },
  containerd: { bridge: 'itbench-ctd0', subnet: '10.242.0.0/24', cgroup: 'itbench-ctd' },
  floor: { bridge: 'itbench-flr0', subnet: '10.243.0.0/24', cgroup: '' },
} as const;

/** The container every pod runs: a shell that leaves at once on SIGTERM (so StopContainer measures the runtime, not a grace period). */
const CONTAINER = ContainerConfig.fromPartial({
  metadata: { name: 'c' },
  image: { image: BUILTIN_BUSYBOX_IMAGE },
  command: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'],
});

function podConfig(side: Side, name: string): PodSandboxConfig {
  const uid = randomUUID();
  return PodSandboxConfig.fromPartial({
    metadata: { name, namespace: 'bench', uid, attempt: 0 },
    linux: { cgroupParent: `/${side.cgroup}/pod${uid}` },
  });
}

async function timed<T>(body: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await body();
  return [value, performance.now() - started];
}

/** Writes the conflist icetray writes by default, on this target's own bridge and subnet, into `dir`/net.d. */
async function writeNetwork(dir: string, target: Target): Promise<string> {
  const confDir = join(dir, 'net.d');
  await mkdir(confDir, { recursive: true });
  const { bridge, subnet } = NETWORKS[target];
  const conflist = defaultConflist({ podCidr: subnet, rootDir: dir, cniBridge: bridge });
  await writeFile(join(confDir, '10-bench.conflist'), JSON.stringify({ ...conflist, name: `icetray-bench-${target}` }));
  return confDir;
}

async function startIcetray(dir: string): Promise<Side> {
  const confDir = await writeNetwork(dir, 'icetray');
  const socket = join(dir, 'icetray.sock');
  const configFile = join(dir, 'config.toml');
  await writeFile(
    configFile,
    [
      `socket = "${socket}"`,
      `root_dir = "${join(dir, 'root')}"`,
      `state_dir = "${join(dir, 'state')}"`,
      `cni_conf_dir = "${confDir}"`,
      `cni_bridge = "${NETWORKS.icetray.bridge}"`,
      `pod_cidr = "${NETWORKS.icetray.subnet}"`,
      'log_level = "warn"',
    ].join('\n'),
  );
  const { child } = await serveIcetray(configFile, socket);
  const cri = connectCri(socket);
  await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
  return { name: 'icetray', dir, socket, daemon: child, cri, cgroup: NETWORKS.icetray.cgroup };
}

async function startContainerdSide(dir: string): Promise<Side> {
  const { child, socket } = await startContainerd(dir, await writeNetwork(dir, 'containerd'));
  return { name: 'containerd', dir, socket, daemon: child, cri: connectCri(socket), cgroup: NETWORKS.containerd.cgroup };
}

function daemonPid(side: Side): number {
  if (side.daemon.pid === undefined) throw new Error(`${side.name} has no pid`);
  return side.daemon.pid;
}

interface LivePod {
  id: string;
  config: PodSandboxConfig;
  containerId: string;
}

async function runPodWithContainer(cri: CriClient, config: PodSandboxConfig): Promise<LivePod> {
  const { podSandboxId } = await cri.runtime.runPodSandbox({ config });
  const { containerId } = await cri.runtime.createContainer({ podSandboxId, config: CONTAINER, sandboxConfig: config });
  await cri.runtime.startContainer({ containerId });
  return { id: podSandboxId, config, containerId };
}

async function execTrue(cri: CriClient, containerId: string): Promise<void> {
  const { exitCode } = await cri.runtime.execSync({ containerId, cmd: ['true'], timeout: 5n });
  if (exitCode !== 0) throw new Error(`ExecSync true in ${containerId} exited ${String(exitCode)}`);
}

/**
 * One round on one runtime, each call alone on the wire: `count` pods run, a container created and
 * started in each, ExecSync and Version, then each stopped and removed. Returns the daemon's CPU ms
 * per pod lifecycle.
 */
async function lifecycleRound(side: Side, count: number, samples: Samples): Promise<number> {
  const { runtime } = side.cri;
  const cpuBefore = await cpuMs(daemonPid(side));
  const pods: { id: string; config: PodSandboxConfig }[] = [];
  for (let i = 0; i < count; i++) {
    const config = podConfig(side, `round-${String(i)}`);
    const [{ podSandboxId }, took] = await timed(() => runtime.runPodSandbox({ config }));
    addSample(samples, 'RunPodSandbox', side.name, took);
    pods.push({ id: podSandboxId, config });
  }
  const containers: string[] = [];
  for (const pod of pods) {
    const [containerId, took] = await timed(async () => {
      const created = await runtime.createContainer({ podSandboxId: pod.id, config: CONTAINER, sandboxConfig: pod.config });
      await runtime.startContainer({ containerId: created.containerId });
      return created.containerId;
    });
    addSample(samples, 'CreateContainer + StartContainer', side.name, took);
    containers.push(containerId);
  }
  for (const containerId of containers) {
    addSample(samples, 'ExecSync `true`', side.name, (await timed(() => execTrue(side.cri, containerId)))[1]);
    addSample(samples, 'Version', side.name, (await timed(() => runtime.version({ version: '' })))[1]);
  }
  for (const containerId of containers)
    addSample(samples, 'StopContainer', side.name, (await timed(() => runtime.stopContainer({ containerId, timeout: 10n })))[1]);
  for (const pod of pods) {
    const [, stop] = await timed(() => runtime.stopPodSandbox({ podSandboxId: pod.id }));
    const [, remove] = await timed(() => runtime.removePodSandbox({ podSandboxId: pod.id }));
    addSample(samples, 'StopPodSandbox + RemovePodSandbox', side.name, stop + remove);
    addSample(samples, 'RemovePodSandbox alone', side.name, remove);
  }
  return ((await cpuMs(daemonPid(side))) - cpuBefore) / count;
}

async function floorRound(floor: Floor, live: Set<FloorPod>, count: number, samples: Samples): Promise<void> {
  const pods: FloorPod[] = [];
  for (let i = 0; i < count; i++) {
    const [pod, took] = await timed(() => floor.run(randomUUID().replaceAll('-', '')));
    live.add(pod);
    pods.push(pod);
    addSample(samples, 'RunPodSandbox', 'floor', took);
  }
  for (const pod of pods) {
    addSample(samples, 'StopPodSandbox + RemovePodSandbox', 'floor', (await timed(() => floor.remove(pod)))[1]);
    live.delete(pod);
  }
}

/**
 * What each live pod costs: its pause, its monitors (icetray) or shims (containerd), and its share
 * of the daemon's growth since `before`. The runtime's processes are the daemon's descendants and
 * whatever names its folder on its command line (containerd's shims re-parent themselves away),
 * with their descendants; the containers' own `sh` and `sleep` are the workload, not counted.
 */
async function podMemory(side: Side, pods: number, before: Memory): Promise<PodMemory & { processes: Record<string, number> }> {
  const all = await processes();
  const pid = daemonPid(side);
  const named = all.filter((proc) => proc.pid !== pid && proc.cmdline.includes(side.dir)).map((proc) => proc.pid);
  const mine = new Map(
    [...all.filter((proc) => named.includes(proc.pid)), ...descendants(all, [pid, ...named])].map((p) => [p.pid, p]),
  );
  const pause: Memory[] = [];
  const monitor: Memory[] = [];
  const counts: Record<string, number> = {};
  for (const proc of mine.values()) {
    counts[proc.comm] = (counts[proc.comm] ?? 0) + 1;
    if (proc.comm === 'sh' || proc.comm === 'sleep') continue;
    (proc.comm === 'pause' ? pause : monitor).push(await memoryOf(proc.pid));
  }
  const after = await memoryOf(pid);
  const growth = { rss: after.rss - before.rss, pss: after.pss - before.pss };
  return { ...perPod(pods, sumMemory(pause), sumMemory(monitor), growth), processes: counts };
}

interface Throughput {
  clients: number;
  lifecycles: number;
  seconds: number;
  perSecond: number;
  lifecycle: Summary;
}

/** `clients` clients, each on its own connection, each running `perClient` whole pod lifecycles at once. */
async function throughput(side: Side, clients: number, perClient: number): Promise<Throughput> {
  const lifecycles: number[] = [];
  const [, took] = await timed(() =>
    Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        const cri = connectCri(side.socket);
        try {
          for (let i = 0; i < perClient; i++) {
            const [, one] = await timed(async () => {
              const pod = await runPodWithContainer(cri, podConfig(side, `load-${String(client)}-${String(i)}`));
              await cri.runtime.stopContainer({ containerId: pod.containerId, timeout: 10n });
              await cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
              await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
            });
            lifecycles.push(one);
          }
        } finally {
          cri.close();
        }
      }),
    ),
  );
  return {
    clients,
    lifecycles: lifecycles.length,
    seconds: took / 1000,
    perSecond: lifecycles.length / (took / 1000),
    lifecycle: summarize(lifecycles),
  };
}

/** Removes every pod through the CRI, then stops the daemon. */
async function shutdown(side: Side): Promise<void> {
  await removeAllPods(side).catch((err: unknown) => console.error(`removing ${side.name}'s pods:`, err));
  side.cri.close();
  await stopChild(side.daemon, 'SIGTERM');
}

/** The same question asked of both runtimes (one after the other when `serial`: a load test must run alone). */
async function perRuntime<T>(
  sides: readonly Side[],
  ask: (side: Side) => Promise<T>,
  serial = false,
): Promise<Record<Runtime, T>> {
  const answers: Partial<Record<Runtime, T>> = {};
  if (serial) for (const side of sides) answers[side.name] = await ask(side);
  else await Promise.all(sides.map(async (side) => (answers[side.name] = await ask(side))));
  if (answers.icetray === undefined || answers.containerd === undefined) throw new Error('a runtime did not answer');
  return { icetray: answers.icetray, containerd: answers.containerd };
}

/** Removes a cgroup tree under every v1 hierarchy (children first; rmdir is how cgroups go). */
async function removeCgroups(name: string): Promise<void> {
  const remove = async (path: string): Promise<void> => {
    const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) await remove(join(path, entry.name));
    await rmdir(path).catch(() => undefined);
  };
  for (const hierarchy of await readdir('/sys/fs/cgroup'))
    if (existsSync(join('/sys/fs/cgroup', hierarchy, name))) await remove(join('/sys/fs/cgroup', hierarchy, name));
}

const load = (): string =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');

/**
 * `npm run bench -- --against containerd`: icetray and containerd v2.4.2 + runc v1.5.2, each a
 * fresh daemon with its own dirs, bridge and socket, driven over their sockets by the same client
 * in interleaved rounds, beside the floor (the same work done by hand). Prints tables, writes JSON.
 */
export async function benchAgainstContainerd(options: AgainstOptions): Promise<void> {
  if (!existsSync(join(CONTAINERD_BIN, 'containerd')) || !existsSync(join(CONTAINERD_BIN, 'runc'))) {
    console.log(`building containerd and runc from the Go module proxy into ${CONTAINERD_BIN} (once, ~7 minutes)`);
    await run('bash', [join(PACKAGE_ROOT, 'bench', 'install-containerd.sh')], {
      env: { ...process.env, ICETRAY_CONTAINERD_DIR: CONTAINERD_BIN },
    });
  }
  const startedAt = new Date().toISOString();
  const loadStart = load();
  const dir = await mkdtemp(join(tmpdir(), 'icetray-bench-against-'));
  const ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  const sides: Side[] = [];
  const floorPods = new Set<FloorPod>();
  const floor = new Floor(
    defaultConflist({ podCidr: NETWORKS.floor.subnet, rootDir: join(dir, 'floor'), cniBridge: NETWORKS.floor.bridge }),
    PAUSE_BINARY,
  );
  try {
    for (const start of [startIcetray, startContainerdSide]) {
      const name = start === startIcetray ? 'icetray' : 'containerd';
      await mkdir(join(dir, name));
      sides.push(await start(join(dir, name)));
    }
    const versions = await perRuntime(sides, async (side) => {
      const version = await side.cri.runtime.version({ version: '' });
      return `${version.runtimeName} ${version.runtimeVersion}`;
    });
    const idle = await perRuntime(sides, (side) => memoryOf(daemonPid(side)));

    // A warm-up round each (first-use costs: image unpack caches, JIT, CNI plugin binaries in the page cache).
    const discard: Samples = new Map();
    for (const side of sides) await lifecycleRound(side, 2, discard);
    await floorRound(floor, floorPods, 2, discard);

    const samples: Samples = new Map();
    const cpu: Record<Runtime, number[]> = { icetray: [], containerd: [] };
    for (let round = 0; round < options.rounds; round++) {
      // Alternate who goes first, so neither always runs on a machine the other just warmed or loaded.
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) cpu[side.name].push(await lifecycleRound(side, options.pods, samples));
      await floorRound(floor, floorPods, options.pods, samples);
      console.log(`round ${String(round + 1)}/${String(options.rounds)} done (load ${load()})`);
    }

    // Live pods: memory per pod and ListPodSandbox with every one of them there.
    const before = await perRuntime(sides, (side) => memoryOf(daemonPid(side)));
    for (const side of sides)
      for (let i = 0; i < options.listPods; i++) await runPodWithContainer(side.cri, podConfig(side, `live-${String(i)}`));
    const listOperation = `ListPodSandbox, ${String(options.listPods)} pods`;
    for (let i = 0; i < 20; i++)
      for (const side of sides) {
        const [{ items }, took] = await timed(() => side.cri.runtime.listPodSandbox({}));
        if (items.length < options.listPods) throw new Error(`${side.name} listed ${String(items.length)} pods`);
        addSample(samples, listOperation, side.name, took);
      }
    const memory = await perRuntime(sides, (side) => podMemory(side, options.listPods, before[side.name]));
    for (const side of sides) await removeAllPods(side);

    const load8 = await perRuntime(sides, (side) => throughput(side, options.clients, options.perClient), true);
    const loadEnd = load();

    const latency = summarizeAll(samples);
    const cpuPerPod = { icetray: summarize(cpu.icetray), containerd: summarize(cpu.containerd) };
    const header =
      `icetray vs containerd, ${String(options.rounds)} interleaved rounds × ${String(options.pods)} pods, one client over each socket. ` +
      `Machine: ${String(cpus().length)} cores, ${String(Math.round(totalmem() / 2 ** 30))} GiB, SHARED with other work now: ` +
      `load average ${loadStart} at start, ${loadEnd} at end.\n${versions.icetray} · ${versions.containerd}; ` +
      'floor = unshare namespace holder + the same CNI plugins run by hand';
    console.log(`\n${latencyTable(header, latency)}`);
    console.log(`\n${memoryTable('Memory per pod (RSS and PSS from /proc/PID/smaps_rollup)', options.listPods, memory)}`);
    const row = (label: string, icetray: number, containerd: number, show: (value: number) => string): string[] => [
      label,
      show(icetray),
      show(containerd),
      ratio(icetray, containerd),
    ];
    const perSecond = (value: number): string => value.toFixed(2);
    console.log(
      `\n${formatTable(
        "Daemon (containerd: the containerd process only; its shims are counted per pod above, their CPU is not, nor icetray's monitors')",
        ['', 'icetray', 'containerd', 'icetray/containerd'],
        [
          row('idle daemon RSS (fresh)', idle.icetray.rss, idle.containerd.rss, kib),
          row('idle daemon PSS (fresh)', idle.icetray.pss, idle.containerd.pss, kib),
          row('daemon CPU per pod lifecycle (p50 of rounds)', cpuPerPod.icetray.p50, cpuPerPod.containerd.p50, ms),
          row(
            `pod lifecycles/s, ${String(options.clients)} clients`,
            load8.icetray.perSecond,
            load8.containerd.perSecond,
            perSecond,
          ),
          row(
            `one lifecycle p50, ${String(options.clients)} clients`,
            load8.icetray.lifecycle.p50,
            load8.containerd.lifecycle.p50,
            ms,
          ),
          row(
            `one lifecycle p90, ${String(options.clients)} clients`,
            load8.icetray.lifecycle.p90,
            load8.containerd.lifecycle.p90,
            ms,
          ),
        ],
      )}`,
    );
    const report = {
      startedAt,
      loadAverage: { start: loadStart, end: loadEnd },
      machine: { cpus: cpus().length, memoryBytes: totalmem(), shared: true },
      options,
      versions,
      latency,
      memory,
      idleDaemon: idle,
      cpuPerPodLifecycleMs: cpuPerPod,
      throughput: load8,
    };
    await writeFile(options.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nJSON: ${options.json}`);
  } finally {
    for (const side of sides) await shutdown(side).catch((err: unknown) => console.error(`stopping ${side.name}:`, err));
    for (const pod of floorPods) await floor.remove(pod).catch(() => undefined);
    for (const { bridge } of Object.values(NETWORKS)) await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    await removeCgroups(NETWORKS.icetray.cgroup);
    await removeCgroups(NETWORKS.containerd.cgroup);
    await writeFile('/proc/sys/net/ipv4/ip_forward', ipForward);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Stops and removes every pod of a runtime through the CRI. */
async function removeAllPods(side: Side): Promise<void> {
  const { items } = await side.cri.runtime.listPodSandbox({});
  for (const pod of items) {
    await side.cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
    await side.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
  }
}
