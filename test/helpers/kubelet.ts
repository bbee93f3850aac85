import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PodSandboxState } from '../../src/generated/api.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { spawnServe, type ServeProcess } from './cli.js';
import { connectCri, type CriClient } from './cri.js';
import { ipForward, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './pods.js';

/** Where conformance/install-kubernetes.sh puts the kubelet and the node e2e suite. */
export const KUBERNETES_DIR =
  process.env['ICETRAY_KUBERNETES_DIR'] ?? join('/var/cache/icetray/kubernetes', process.env['KUBERNETES_VERSION'] ?? 'v1.37.2');
export const KUBELET = join(KUBERNETES_DIR, 'kubelet');
const PRIVATE_NODE = join(PACKAGE_ROOT, 'conformance', 'private-node.sh');
/** The folder a kubelet creates whatever its --root-dir (device plugins' sockets). */
const HARD_CODED_KUBELET_DIR = '/var/lib/kubelet';

/** Why the kubelet suite cannot run here, or undefined. In CI nothing is skipped: npm test builds it. */
export function kubeletMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: a kubelet and real pods';
  if (existsSync(KUBELET) || process.env['CI'] === 'true') return undefined;
  return `the kubelet is not built at ${KUBELET}: run conformance/install-kubernetes.sh kubelet`;
}

/** The parts of a pod's status (the kubelet's /pods) the tests read. */
export interface PodStatus {
  phase?: string;
  podIP?: string;
  conditions?: { type: string; status: string }[];
  containerStatuses?: ContainerStatus[];
  initContainerStatuses?: ContainerStatus[];
}
export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  containerID?: string;
  state: { running?: { startedAt: string }; waiting?: { reason: string }; terminated?: { exitCode: number; reason: string } };
  lastState: { terminated?: { exitCode: number; reason: string } };
}
interface PodList {
  items: { metadata: { name: string; namespace: string; uid: string }; status: PodStatus }[];
}

/**
 * A node as a kubelet sees it: a fresh icetray and a standalone kubelet (no API server: static
 * pods from a manifest folder) driving it over the CRI socket.
 *
 * Kept from harming a shared host (../shared/README.md): both run in one private mount
 * namespace (conformance/private-node.sh) where the kernel tunables the kubelet rewrites are
 * files, so its volumes reach icetray and no mount reaches the host; the kubelet gets a cgroup
 * root of its own (a kubelet kills unknown processes under its root), its own dirs and ports on
 * 127.0.0.1, no iptables chains, no image GC; icetray gets its own bridge and range.
 */
export interface KubeletNode {
  dir: string;
  nodeName: string;
  /** The kubelet's cgroup root, e.g. /icetray-kubelet-1a2b3c. */
  cgroupRoot: string;
  podLogsDir: string;
  icetray: ServeProcess;
  cri: CriClient;
  net: TestNetwork;
  /** The kubelet's API (https://127.0.0.1:PORT): the body, or an error naming the status. */
  get(path: string): Promise<string>;
  post(path: string): Promise<string>;
  pods(): Promise<PodList['items']>;
  /** The status of static pod `name` (as named in its manifest), once the kubelet reports it. */
  status(name: string): Promise<PodStatus | undefined>;
  /** Writes a static pod manifest; the kubelet starts the pod. */
  addPod(manifest: StaticPod): Promise<void>;
  /** Removes the manifest; the kubelet stops and removes the pod. */
  removePod(name: string): Promise<void>;
  restartKubelet(): Promise<void>;
  /** SIGKILLs icetray and starts it again over the same state. */
  crashIcetray(): Promise<void>;
  /** A file of the kubelet's cgroup tree: /sys/fs/cgroup/CONTROLLER/<cgroupRoot>/RELATIVE. */
  cgroupFile(controller: string, relative: string): string;
  logs(): string;
  close(): Promise<void>;
}

export interface StaticPod {
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
}

/** Polls `probe` until it returns a value that is not undefined, or fails naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(300);
  }
  throw new Error(`timed out waiting for ${what}`, { cause: lastError });
}

/** The v1 hierarchies (and the v2 tree) mounted on this host: where a cgroup root must exist. */
function cgroupMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => {
      const type = fields[fields.indexOf('-') + 1];
      return type === 'cgroup' || type === 'cgroup2';
    })
    .map((fields) => fields[4] ?? '')
    .filter((mount) => mount !== '');
}

async function makeCgroupRoot(name: string): Promise<void> {
  for (const mount of cgroupMounts()) {
    await mkdir(join(mount, name), { recursive: true });
    // A v1 cpuset group starts empty: no task can join it until it has CPUs and memory nodes.
    if (existsSync(join(mount, 'cpuset.cpus')) && !mount.endsWith('unified'))
      for (const file of ['cpuset.cpus', 'cpuset.mems'])
        await writeFile(join(mount, name, file), await readFile(join(mount, file), 'utf8'));
  }
}

/** Removes the kubelet's cgroup tree, deepest first, in every hierarchy. */
async function removeCgroupRoot(name: string): Promise<string[]> {
  const left: string[] = [];
  for (const mount of cgroupMounts()) {
    const top = join(mount, name);
    if (!existsSync(top)) continue;
    const found = await sh('find', [top, '-depth', '-type', 'd']);
    for (const dir of found.stdout.split('\n').filter((d) => d !== '')) {
      const removed = await sh('rmdir', [dir]);
      if (removed.code !== 0) left.push(dir);
    }
  }
  return left;
}

function kubeletConfig(dir: string, port: number, cgroupRoot: string, socket: string): object {
  return {
    kind: 'KubeletConfiguration',
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    containerRuntimeEndpoint: `unix://${socket}`,
    staticPodPath: join(dir, 'manifests'),
    fileCheckFrequency: '1s',
    syncFrequency: '5s',
    address: '127.0.0.1',
    port,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: port + 1,
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: 'AlwaysAllow' },
    // This host is cgroup v1; a kubelet ≥ 1.35 refuses v1 unless told.
    failCgroupV1: false,
    failSwapOn: false,
    cgroupsPerQOS: true,
    cgroupRoot,
    makeIPTablesUtilChains: false,
    podLogsDir: join(dir, 'pod-logs'),
    volumePluginDir: join(dir, 'volume-plugins'),
    // Image GC off: the images belong to the test's icetray, and disk pressure is the host's.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    // The pause image is icetray's own; the kubelet asks, and never pulls one.
    serializeImagePulls: false,
    // Probes and restarts quickly enough for a test; CrashLoopBackOff still starts at 10 s.
    nodeStatusUpdateFrequency: '2s',
  };
}

let nextPort = 10_450 + (process.pid % 40) * 4;

export async function startKubeletNode(): Promise<KubeletNode> {
  const dir = await mkdtemp(join(tmpdir(), 'icetray-kubelet-'));
  const suffix = dir
    .slice(-6)
    .toLowerCase()
    .replace(/[^a-z0-9]/g, 'x');
  const nodeName = `icetray-node-${suffix}`;
  const cgroupRoot = `/icetray-kubelet-${suffix}`;
  const port = (nextPort += 4);
  const ipForwardBefore = ipForward();
  // Pods route through the bridge: icetray reports the network not ready while forwarding is
  // off, and the kubelet then starts no pod. The host's value comes back in close().
  restoreIpForward('1');
  const hadKubeletDir = existsSync(HARD_CODED_KUBELET_DIR);
  await mkdir(join(dir, 'manifests'), { recursive: true });
  await makeCgroupRoot(cgroupRoot);

  // The namespace is held by a sleeper; icetray and the kubelet nsenter into it.
  const holder = spawn(PRIVATE_NODE, ['sleep', 'infinity'], { stdio: 'ignore' });
  await waitFor('the private mount namespace', async () =>
    (await readFile(`/proc/${String(holder.pid)}/cmdline`, 'utf8').catch(() => '')).startsWith('sleep') ? true : undefined,
  );
  const enter = ['nsenter', `--target=${String(holder.pid)}`, '--mount', '--'];

  const socket = join(dir, 'run', 'icetray.sock');
  const configFile = join(dir, 'icetray.toml');
  await writeFile(
    configFile,
    [
      `socket = "${socket}"`,
      `root_dir = "${join(dir, 'root')}"`,
      `state_dir = "${join(dir, 'run')}"`,
      `cni_conf_dir = "${join(dir, 'net.d')}"`,
      'enable_ip_forward = false',
    ].join('\n'),
  );
  const net = writeTestNetwork(join(dir, 'net.d'), dir);
  let icetray = await spawnServe(['--config', configFile], dir, socket, configFile, { wrap: enter });
  let cri = connectCri(socket);

  const kubeletLog = join(dir, 'kubelet.log');
  await writeFile(join(dir, 'kubelet.json'), JSON.stringify(kubeletConfig(dir, port, cgroupRoot, socket), null, 2));
  let kubelet: ChildProcess | undefined;
  const startKubelet = async (): Promise<void> => {
    const out = createWriteStream(kubeletLog, { flags: 'a' });
    const args = [
      `--config=${join(dir, 'kubelet.json')}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--cert-dir=${join(dir, 'kubelet', 'pki')}`,
      `--hostname-override=${nodeName}`,
      '--v=2',
    ];
    const child = spawn(enter[0] ?? '', [...enter.slice(1), KUBELET, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    kubelet = child;
    await waitFor('the kubelet to answer /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`the kubelet exited ${String(child.exitCode)}`);
      return (await get(`http://127.0.0.1:${String(port + 1)}/healthz`)) === 'ok' ? true : undefined;
    });
  };
  const stopKubelet = async (): Promise<void> => {
    const child = kubelet;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };

  const api = (method: string, path: string): Promise<string> =>
    new Promise((resolve, reject) => {
      // The kubelet's serving certificate is self-signed; nothing leaves 127.0.0.1.
      const req = request({ host: '127.0.0.1', port, path, method, rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () =>
          (res.statusCode ?? 0) < 300 ? resolve(body) : reject(new Error(`${method} ${path}: ${String(res.statusCode)} ${body}`)),
        );
      });
      req.on('error', reject);
      req.end();
    });

  const node: KubeletNode = {
    dir,
    nodeName,
    cgroupRoot,
    podLogsDir: join(dir, 'pod-logs'),
    icetray,
    cri,
    net,
    get: (path) => api('GET', path),
    post: (path) => api('POST', path),
    async pods() {
      return (JSON.parse(await node.get('/pods')) as PodList).items;
    },
    async status(name) {
      return (await node.pods()).find((pod) => pod.metadata.name === `${name}-${nodeName}`)?.status;
    },
    async addPod(manifest) {
      await writeFile(
        join(dir, 'manifests', `${manifest.metadata.name}.json`),
        JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...manifest }),
      );
    },
    async removePod(name) {
      await rm(join(dir, 'manifests', `${name}.json`), { force: true });
    },
    async restartKubelet() {
      await stopKubelet();
      await startKubelet();
    },
    async crashIcetray() {
      cri.close();
      await icetray.kill('SIGKILL');
      icetray = await spawnServe(['--config', configFile], dir, socket, configFile, { wrap: enter });
      cri = connectCri(socket);
      node.icetray = icetray;
      node.cri = cri;
    },
    cgroupFile(controller, relative) {
      return join('/sys/fs/cgroup', controller, cgroupRoot, relative);
    },
    logs() {
      return readFileSync(kubeletLog, 'utf8');
    },
    async close() {
      for (const manifest of readdirSync(join(dir, 'manifests'))) await rm(join(dir, 'manifests', manifest));
      // The kubelet stops a pod as soon as its manifest goes, and removes the sandbox only at
      // its next garbage collection (every minute): once all are stopped, the CRI removes them.
      await waitFor('the kubelet to stop its pods', async () =>
        (await node.cri.runtime.listPodSandbox({})).items.every((pod) => pod.state === PodSandboxState.SANDBOX_NOTREADY)
          ? true
          : undefined,
      ).catch(() => undefined);
      await stopKubelet();
      for (const pod of (await node.cri.runtime.listPodSandbox({})).items)
        await node.cri.runtime.removePodSandbox({ podSandboxId: pod.id }).catch(() => undefined);
      node.cri.close();
      await node.icetray.kill('SIGTERM');
      holder.kill('SIGKILL');
      const left = await removeCgroupRoot(cgroupRoot);
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(ipForwardBefore);
      if (!hadKubeletDir) await rm(HARD_CODED_KUBELET_DIR, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
      if (left.length > 0) throw new Error(`cgroups left behind: ${left.join(', ')}`);
    },
  };
  try {
    await startKubelet();
  } catch (err) {
    const log = existsSync(kubeletLog) ? readFileSync(kubeletLog, 'utf8').split('\n').slice(-40).join('\n') : '';
    await node.close().catch(() => undefined);
    throw new Error(`the kubelet did not start:\n${log}`, { cause: err });
  }
  return node;
}

/** A plain HTTP GET (the kubelet's healthz port), the body, or undefined when it does not answer. */
function get(url: string): Promise<string | undefined> {
  return fetch(url, { signal: AbortSignal.timeout(2000) })
    .then((res) => res.text())
    .catch(() => undefined);
}
