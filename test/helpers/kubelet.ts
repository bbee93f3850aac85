import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PodSandboxState } from '../../src/generated/api.js';
import {
  KUBELET,
  PRIVATE_NODE,
  StandaloneKubelet,
  waitFor,
  type KubeletPod,
  type PodStatus,
  type StaticPod,
} from '../../src/kubelet/standalone.js';
import { spawnServe, startServeProcess, type ServeProcess } from './cli.js';
import { connectCri, type CriClient } from './cri.js';
import { ipForward, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './pods.js';

export { waitFor, type ContainerStatus, type PodStatus } from '../../src/kubelet/standalone.js';

/** Why the kubelet suite cannot run here, or undefined. In CI nothing is skipped: npm test builds it. */
export function kubeletMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: a kubelet and real pods';
  if (existsSync(KUBELET) || process.env['CI'] === 'true') return undefined;
  return `the kubelet is not built at ${KUBELET}: run conformance/install-kubernetes.sh kubelet`;
}

/**
 * A node as a kubelet sees it: a fresh icetray and a standalone kubelet driving it over the CRI
 * socket (src/kubelet/standalone.ts). Both run in one private mount namespace, held by a sleeper,
 * so the volumes the kubelet mounts are there for icetray to bind and no mount reaches the host;
 * icetray gets its own bridge and range.
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
  kubelet: StandaloneKubelet;
  get(path: string): Promise<string>;
  post(path: string): Promise<string>;
  pods(): Promise<KubeletPod[]>;
  /** The status of static pod `name` (as named in its manifest), once the kubelet reports it. */
  status(name: string): Promise<PodStatus | undefined>;
  addPod(manifest: StaticPod): Promise<void>;
  removePod(name: string): Promise<void>;
  restartKubelet(): Promise<void>;
  /** SIGKILLs icetray and starts it again over the same state. */
  crashIcetray(): Promise<void>;
  /** A file of the kubelet's cgroup tree: /sys/fs/cgroup/CONTROLLER/<cgroupRoot>/RELATIVE. */
  cgroupFile(controller: string, relative: string): string;
  logs(): string;
  close(): Promise<void>;
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
  const ipForwardBefore = ipForward();
  // Pods route through the bridge: icetray reports the network not ready while forwarding is
  // off, and the kubelet then starts no pod. The host's value comes back in close().
  restoreIpForward('1');

  const holder = spawn(PRIVATE_NODE, ['sleep', 'infinity'], { stdio: 'ignore' });
  await waitFor('the private mount namespace', async () =>
    (await readFile(`/proc/${String(holder.pid)}/cmdline`, 'utf8').catch(() => '')).startsWith('sleep') ? true : undefined,
  );
  const enter = ['nsenter', `--target=${String(holder.pid)}`, '--mount', '--'];

  const icetray = await startServeProcess('', { wrap: enter });
  const net = writeTestNetwork(join(icetray.dir, 'net.d'), icetray.dir);
  const cleanUp = async (): Promise<void> => {
    holder.kill('SIGKILL');
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
    await rm(icetray.dir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  };
  let kubelet: StandaloneKubelet;
  try {
    kubelet = await StandaloneKubelet.start({ dir, socket: icetray.socket, nodeName, cgroupRoot, port: (nextPort += 4), enter });
  } catch (err) {
    await icetray.kill('SIGTERM');
    await cleanUp();
    throw err;
  }

  const node: KubeletNode = {
    dir,
    nodeName,
    cgroupRoot,
    podLogsDir: join(dir, 'pod-logs'),
    icetray,
    cri: connectCri(icetray.socket),
    net,
    kubelet,
    get: (path) => kubelet.api('GET', path),
    post: (path) => kubelet.api('POST', path),
    pods: () => kubelet.pods(),
    async status(name) {
      return (await kubelet.pod(name))?.status;
    },
    addPod: (manifest) => kubelet.addPod(manifest),
    removePod: (name) => kubelet.removePod(name),
    restartKubelet: () => kubelet.restart(),
    async crashIcetray() {
      node.cri.close();
      await node.icetray.kill('SIGKILL');
      node.icetray = await spawnServe(['--config', icetray.configFile], icetray.dir, icetray.socket, icetray.configFile, {
        wrap: enter,
      });
      node.cri = connectCri(icetray.socket);
    },
    cgroupFile(controller, relative) {
      return join('/sys/fs/cgroup', controller, cgroupRoot, relative);
    },
    logs: () => kubelet.logs(),
    async close() {
      await kubelet.removeAllPods();
      // The kubelet stops a pod as soon as its manifest goes, and removes the sandbox only at
      // its next garbage collection (every minute): once all are stopped, the CRI removes them.
      await waitFor('the kubelet to stop its pods', async () =>
        (await node.cri.runtime.listPodSandbox({})).items.every((pod) => pod.state === PodSandboxState.SANDBOX_NOTREADY)
          ? true
          : undefined,
      ).catch(() => undefined);
      await kubelet.stop();
      for (const pod of (await node.cri.runtime.listPodSandbox({})).items)
        await node.cri.runtime.removePodSandbox({ podSandboxId: pod.id }).catch(() => undefined);
      node.cri.close();
      await node.icetray.kill('SIGTERM');
      try {
        await kubelet.close();
      } finally {
        await cleanUp();
      }
    },
  };
  return node;
}
