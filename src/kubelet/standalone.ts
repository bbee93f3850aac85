import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startChild, type ChildProcess } from '../os/child.js';
import { run } from '../os/exec.js';
import { PACKAGE_ROOT } from '../paths.js';

/**
 * A standalone kubelet (no API server: static pods from a manifest folder) driving an icetray over
 * its CRI socket — what the kubelet suite (test/kubelet) and `icetray demo --kubelet` run.
 *
 * A kubelet assumes it owns the node. Kept from harming a shared host (../shared/README.md):
 * it runs in a private mount namespace whose kernel tunables it rewrites are files
 * (conformance/private-node.sh); it gets a cgroup root of its own (a kubelet kills unknown
 * processes in pod cgroups under its root), its own folders and ports on 127.0.0.1, no iptables
 * chains and no image GC.
 */

/** Where conformance/install-kubernetes.sh puts the kubelet and the node e2e suite. */
export const KUBERNETES_DIR =
  process.env['ICETRAY_KUBERNETES_DIR'] ?? join('/var/cache/icetray/kubernetes', process.env['KUBERNETES_VERSION'] ?? 'v1.37.2');
export const KUBELET = join(KUBERNETES_DIR, 'kubelet');
/** Runs a command in a private mount namespace with the kubelet's kernel tunables as files. */
export const PRIVATE_NODE = join(PACKAGE_ROOT, 'conformance', 'private-node.sh');
/** The folder a kubelet creates whatever its --root-dir (device plugins' sockets). */
const HARD_CODED_KUBELET_DIR = '/var/lib/kubelet';

/** The parts of a pod's status (the kubelet's /pods) that icetray's tests and demo read. */
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
export interface KubeletPod {
  metadata: { name: string; namespace: string; uid: string };
  status: PodStatus;
}
export interface StaticPod {
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
}

export interface KubeletOptions {
  /** The kubelet's folder: config, manifests, root dir, pod logs, its log. */
  dir: string;
  socket: string;
  nodeName: string;
  /** Its cgroup root, e.g. /icetray-kubelet-1a2b3c: made here in every hierarchy, removed at close. */
  cgroupRoot: string;
  /** Its API port on 127.0.0.1; healthz listens on the next one. */
  port: number;
  /** The command that runs the kubelet: by default in a private mount namespace of its own. */
  enter?: string[];
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

/** Removes the kubelet's cgroup tree, deepest first, in every hierarchy; returns what stayed. */
async function removeCgroupRoot(name: string): Promise<string[]> {
  const left: string[] = [];
  for (const mount of cgroupMounts()) {
    const top = join(mount, name);
    if (!existsSync(top)) continue;
    const { stdout } = await run('find', [top, '-depth', '-type', 'd']);
    for (const dir of stdout.split('\n').filter((d) => d !== '')) await run('rmdir', [dir]).catch(() => left.push(dir));
  }
  return left;
}

function kubeletConfig(options: KubeletOptions): object {
  const { dir, port, cgroupRoot, socket } = options;
  return {
    kind: 'KubeletConfiguration',
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    containerRuntimeEndpoint: `unix://${socket}`,
    // No cgroupDriver: a kubelet ≥ 1.34 takes it from icetray (RuntimeConfig, KEP-4033).
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
    // A kubelet ≥ 1.35 refuses a cgroup v1 host unless told.
    failCgroupV1: false,
    failSwapOn: false,
    cgroupsPerQOS: true,
    cgroupRoot,
    makeIPTablesUtilChains: false,
    podLogsDir: join(dir, 'pod-logs'),
    volumePluginDir: join(dir, 'volume-plugins'),
    // Image GC off: the images belong to icetray, and disk pressure is the host's.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    serializeImagePulls: false,
    nodeStatusUpdateFrequency: '2s',
  };
}

/** A plain HTTP GET (the kubelet's healthz port): the body, or undefined when it does not answer. */
function healthz(port: number): Promise<string | undefined> {
  return fetch(`http://127.0.0.1:${String(port)}/healthz`, { signal: AbortSignal.timeout(2000) })
    .then((res) => res.text())
    .catch(() => undefined);
}

export class StandaloneKubelet {
  private child: ChildProcess | undefined;

  private constructor(
    readonly options: KubeletOptions,
    private readonly hadKubeletDir: boolean,
  ) {}

  /** Makes its folders and cgroup root, starts it and waits until it answers /healthz. */
  static async start(options: KubeletOptions): Promise<StandaloneKubelet> {
    const kubelet = new StandaloneKubelet(options, existsSync(HARD_CODED_KUBELET_DIR));
    await mkdir(join(options.dir, 'manifests'), { recursive: true });
    await writeFile(join(options.dir, 'kubelet.json'), JSON.stringify(kubeletConfig(options), null, 2));
    await makeCgroupRoot(options.cgroupRoot);
    try {
      await kubelet.launch();
    } catch (err) {
      const log = kubelet.logs().split('\n').slice(-40).join('\n');
      await kubelet.close().catch(() => undefined);
      throw new Error(`the kubelet did not start:\n${log}`, { cause: err });
    }
    return kubelet;
  }

  get logFile(): string {
    return join(this.options.dir, 'kubelet.log');
  }

  private async launch(): Promise<void> {
    const { dir, nodeName, port } = this.options;
    const args = [
      `--config=${join(dir, 'kubelet.json')}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--cert-dir=${join(dir, 'kubelet', 'pki')}`,
      `--hostname-override=${nodeName}`,
      '--v=2',
    ];
    const command = [...(this.options.enter ?? [PRIVATE_NODE]), KUBELET, ...args];
    const log = openSync(this.logFile, 'a');
    const child = await startChild(command[0] ?? '', command.slice(1), {
      env: process.env,
      stdio: ['ignore', log, log],
      extraPipes: 0,
    }).finally(() => closeSync(log));
    this.child = child;
    await waitFor('the kubelet to answer /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`the kubelet exited ${String(child.exitCode)}`);
      return (await healthz(port + 1)) === 'ok' ? true : undefined;
    });
  }

  /** SIGTERM, and the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** The kubelet's API (https://127.0.0.1:PORT): the body, or an error naming the status. */
  api(method: 'GET' | 'POST', path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      // Its serving certificate is self-signed; nothing leaves 127.0.0.1.
      const req = request({ host: '127.0.0.1', port: this.options.port, path, method, rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () =>
          (res.statusCode ?? 0) < 300 ? resolve(body) : reject(new Error(`${method} ${path}: ${String(res.statusCode)} ${body}`)),
        );
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** The pods the kubelet runs, with their status (a standalone kubelet fills it in for static pods). */
  async pods(): Promise<KubeletPod[]> {
    return (JSON.parse(await this.api('GET', '/pods')) as { items: KubeletPod[] }).items;
  }

  /** Static pod `name` as its manifest names it (the kubelet appends the node's name). */
  async pod(name: string): Promise<KubeletPod | undefined> {
    return (await this.pods()).find((pod) => pod.metadata.name === `${name}-${this.options.nodeName}`);
  }

  /** Writes a static pod manifest; the kubelet starts the pod. */
  async addPod(manifest: StaticPod): Promise<void> {
    const file = join(this.options.dir, 'manifests', `${manifest.metadata.name}.json`);
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...manifest }));
  }

  /** Removes the manifest; the kubelet stops the pod (and removes its sandbox at its next GC). */
  async removePod(name: string): Promise<void> {
    await rm(join(this.options.dir, 'manifests', `${name}.json`), { force: true });
  }

  /** Removes every manifest. */
  async removeAllPods(): Promise<void> {
    for (const manifest of readdirSync(join(this.options.dir, 'manifests')))
      await this.removePod(manifest.replace(/\.json$/, ''));
  }

  logs(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /**
   * Stops it and removes what it made outside its folder: its cgroup tree (once its pods are
   * gone) and /var/lib/kubelet if that was not there before. Fails naming cgroups left behind.
   */
  async close(): Promise<void> {
    await this.stop();
    const left = await removeCgroupRoot(this.options.cgroupRoot);
    if (!this.hadKubeletDir) await rm(HARD_CODED_KUBELET_DIR, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`cgroups left behind: ${left.join(', ')}`);
  }
}
