import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, messageOf } from '../errors.js';
import {
  CgroupDriver,
  ContainerConfig,
  ContainerState,
  NamespaceMode,
  PodSandboxConfig,
  PodSandboxState,
} from '../generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../images/store.js';
import { KUBELET, StandaloneKubelet, waitFor } from '../kubelet/standalone.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';
import { connectCri, type CriClient } from './cri-client.js';

export const DEMO_HELP = `Usage: icetray demo [--only STEP | --kubelet] [options]

Show, through icetray's own CRI API (calling it as a kubelet would), what the pause container
does: a pod with two containers, and the evidence that
  network        both containers have the pod's one IP, and talk over localhost
  ipc            they share IPC: a POSIX shared memory file made in one is seen in the other
  pid            with a shared PID namespace each sees the other's processes; without, not
  restart        a container that crashes is replaced while pause, the IP and the namespaces stay
  pause-image    the pause image in force, present and pinned
  cgroup-driver  the cgroup driver, as RuntimeConfig reports it to the kubelet
Each step ends PASS or FAIL; everything it made is removed; exit 1 on any FAIL.
The containers run ${BUILTIN_BUSYBOX_IMAGE}, made on this node from busybox-static.

With --kubelet, the restart is done by a real kubelet instead (built by
conformance/install-kubernetes.sh kubelet): a standalone kubelet, in a mount namespace and a
cgroup root of its own, runs a static pod on icetray whose "crasher" container keeps exiting;
the kubelet restarts it, with CrashLoopBackOff, while pause, the sandbox and the IP stay.

Options:
${CONFIG_HELP}  --only STEP         run one step
  --kubelet           run the kubelet step (about a minute)
  -h, --help          show this help
`;

export const DEMO_OPTIONS = { ...CONFIG_OPTIONS, only: { type: 'string' }, kubelet: { type: 'boolean' } } as const;

const STEPS = ['network', 'ipc', 'pid', 'restart', 'pause-image', 'cgroup-driver'] as const;
/** The steps, and the kubelet one, which runs only when asked (--kubelet): it needs a built kubelet. */
type Step = (typeof STEPS)[number] | 'kubelet';

/** What one step found: lines of evidence and whether it holds. */
interface Finding {
  evidence: string[];
  pass: boolean;
}

/** The demo's pods and containers, made through the CRI and removed at the end. */
class Stage {
  readonly pods: string[] = [];
  private readonly suffix = Math.random().toString(36).slice(2, 8);

  constructor(private readonly cri: CriClient) {}

  async pod(name: string, pid: NamespaceMode): Promise<{ id: string; config: PodSandboxConfig }> {
    const config = PodSandboxConfig.fromPartial({
      metadata: { name: `${name}-${this.suffix}`, namespace: 'icetray-demo', uid: `${name}-${this.suffix}`, attempt: 0 },
      hostname: name,
      linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, ipc: NamespaceMode.POD, pid } } },
    });
    const { podSandboxId } = await this.cri.runtime.runPodSandbox({ config });
    this.pods.push(podSandboxId);
    return { id: podSandboxId, config };
  }

  async container(pod: { id: string; config: PodSandboxConfig }, name: string, command: string[], attempt = 0): Promise<string> {
    const config = ContainerConfig.fromPartial({
      metadata: { name, attempt },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command,
      linux: { securityContext: { namespaceOptions: pod.config.linux?.securityContext?.namespaceOptions } },
    });
    const { containerId } = await this.cri.runtime.createContainer({ podSandboxId: pod.id, config, sandboxConfig: pod.config });
    await this.cri.runtime.startContainer({ containerId });
    return containerId;
  }

  async exec(containerId: string, command: string): Promise<string> {
    const result = await this.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', command], timeout: 5n });
    return result.stdout.toString().trim();
  }

  /** The verbose info of a pod: its pause pid and namespace inodes, as icetray recorded them. */
  async podInfo(id: string): Promise<{ ip: string; pid: number; netInode: number }> {
    const response = await this.cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    const info = JSON.parse(response.info['info'] ?? '{}') as { pid: number; namespaces: { net?: { inode: number } } };
    return { ip: response.status?.network?.ip ?? '', pid: info.pid, netInode: info.namespaces.net?.inode ?? 0 };
  }

  async cleanUp(): Promise<void> {
    for (const id of this.pods) await this.cri.runtime.removePodSandbox({ podSandboxId: id }).catch(() => undefined);
  }
}

async function network(stage: Stage): Promise<Finding> {
  const pod = await stage.pod('network', NamespaceMode.POD);
  const web = await stage.container(pod, 'web', [
    'sh',
    '-c',
    'mkdir -p /www && echo hello from web > /www/index.html && httpd -f -p 127.0.0.1:8080 -h /www',
  ]);
  const client = await stage.container(pod, 'client', ['sleep', '3600']);
  const { ip } = await stage.podInfo(pod.id);
  const addr = 'ip -4 -o addr show eth0 | awk "{print \\$4}"';
  const [webIp, clientIp] = [await stage.exec(web, addr), await stage.exec(client, addr)];
  let body = '';
  for (let i = 0; i < 20 && body === ''; i++) {
    body = await stage.exec(client, 'wget -qO- http://127.0.0.1:8080/ 2>/dev/null || true');
    if (body === '') await sleep(50);
  }
  return {
    evidence: [
      `pod IP (PodSandboxStatus): ${ip}`,
      `eth0 in "web":    ${webIp}`,
      `eth0 in "client": ${clientIp}`,
      `"client" GET http://127.0.0.1:8080/ → "${body}" (served by "web")`,
    ],
    pass: ip !== '' && webIp.startsWith(`${ip}/`) && clientIp === webIp && body === 'hello from web',
  };
}

async function ipc(stage: Stage): Promise<Finding> {
  const pod = await stage.pod('ipc', NamespaceMode.POD);
  const writer = await stage.container(pod, 'writer', ['sh', '-c', 'echo made in writer > /dev/shm/icetray-demo; sleep 3600']);
  const reader = await stage.container(pod, 'reader', ['sleep', '3600']);
  await sleep(100);
  const [ipcWriter, ipcReader] = [
    await stage.exec(writer, 'readlink /proc/self/ns/ipc'),
    await stage.exec(reader, 'readlink /proc/self/ns/ipc'),
  ];
  const seen = await stage.exec(reader, 'cat /dev/shm/icetray-demo 2>&1');
  return {
    evidence: [
      `IPC namespace of "writer": ${ipcWriter}`,
      `IPC namespace of "reader": ${ipcReader}`,
      `"reader" reads /dev/shm/icetray-demo: "${seen}"`,
    ],
    pass: ipcWriter === ipcReader && seen === 'made in writer',
  };
}

async function pid(stage: Stage): Promise<Finding> {
  const shared = await stage.pod('pid-shared', NamespaceMode.POD);
  await stage.container(shared, 'one', ['sleep', '3601']);
  const two = await stage.container(shared, 'two', ['sleep', '3602']);
  const sharedPs = await stage.exec(two, 'ps -o pid,args | tail -n +2');
  const own = await stage.pod('pid-own', NamespaceMode.CONTAINER);
  await stage.container(own, 'one', ['sleep', '3603']);
  const alone = await stage.container(own, 'two', ['sleep', '3604']);
  const ownPs = await stage.exec(alone, 'ps -o pid,args | tail -n +2');
  return {
    evidence: [
      'pid=POD, "two" runs ps:',
      ...sharedPs.split('\n').map((l) => `    ${l.trim()}`),
      'pid=CONTAINER, "two" runs ps:',
      ...ownPs.split('\n').map((l) => `    ${l.trim()}`),
    ],
    pass:
      /^1\s+.*pause/m.test(sharedPs) &&
      sharedPs.includes('sleep 3601') &&
      !ownPs.includes('sleep 3603') &&
      /^1\s+sleep 3604/m.test(ownPs),
  };
}

async function restart(stage: Stage, cri: CriClient): Promise<Finding> {
  const pod = await stage.pod('restart', NamespaceMode.POD);
  const before = await stage.podInfo(pod.id);
  const crashing = await stage.container(pod, 'app', ['sh', '-c', 'sleep 0.3; exit 3']);
  let state = await cri.runtime.containerStatus({ containerId: crashing });
  for (let i = 0; i < 100 && state.status?.state !== ContainerState.CONTAINER_EXITED; i++) {
    await sleep(50);
    state = await cri.runtime.containerStatus({ containerId: crashing });
  }
  const after = await stage.podInfo(pod.id);
  // The kubelet's restart: a new container, attempt + 1, in the same sandbox.
  const replacement = await stage.container(pod, 'app', ['sleep', '3600'], 1);
  const netInode = await stage.exec(replacement, 'readlink /proc/self/ns/net');
  return {
    evidence: [
      `"app" attempt 0 crashed: ${state.status?.state === ContainerState.CONTAINER_EXITED ? 'EXITED' : 'still running'}, exit code ${String(state.status?.exitCode)} (${state.status?.reason ?? ''})`,
      `pause pid before/after: ${before.pid} / ${after.pid}`,
      `pod IP before/after:    ${before.ip} / ${after.ip}`,
      `netns inode before:     ${before.netInode}; "app" attempt 1 is in ${netInode}`,
    ],
    pass:
      state.status?.exitCode === 3 &&
      before.pid === after.pid &&
      before.ip === after.ip &&
      before.ip !== '' &&
      netInode === `net:[${before.netInode}]`,
  };
}

/** The restart again, done by a real kubelet: the CrashLoopBackOff a cluster user sees, in one sandbox. */
async function kubeletRestart(cri: CriClient, socket: string): Promise<Finding> {
  if (!existsSync(KUBELET))
    return { evidence: [`no kubelet at ${KUBELET}: build it with conformance/install-kubernetes.sh kubelet`], pass: false };
  const dir = await mkdtemp(join(tmpdir(), 'icetray-demo-kubelet-'));
  const suffix = Math.random().toString(36).slice(2, 8);
  const kubelet = await StandaloneKubelet.start({
    dir,
    socket,
    nodeName: `icetray-demo-${suffix}`,
    cgroupRoot: `/icetray-demo-${suffix}`,
    port: 10_350,
  });
  const evidence: string[] = [];
  let sandboxId = '';
  try {
    await kubelet.addPod({
      metadata: { name: 'tray', namespace: 'icetray-demo' },
      spec: {
        containers: [
          { name: 'web', image: BUILTIN_BUSYBOX_IMAGE, command: ['sh', '-c', 'mkdir -p /www && exec httpd -f -p 8080 -h /www'] },
          { name: 'crasher', image: BUILTIN_BUSYBOX_IMAGE, command: ['sh', '-c', 'sleep 2; exit 1'] },
        ],
      },
    });
    const started = Date.now();
    const first = await waitFor('the kubelet to run the pod', async () => {
      const pod = await kubelet.pod('tray');
      return pod?.status.podIP !== undefined ? pod : undefined;
    });
    const sandboxes = async () =>
      (await cri.runtime.listPodSandbox({ filter: { labelSelector: { 'io.kubernetes.pod.uid': first.metadata.uid } } })).items;
    sandboxId = (await waitFor('its sandbox', async () => (await sandboxes())[0])).id;
    const pause = async (): Promise<{ ip: string; pid: number }> => {
      const response = await cri.runtime.podSandboxStatus({ podSandboxId: sandboxId, verbose: true });
      return { ip: response.status?.network?.ip ?? '', pid: (JSON.parse(response.info['info'] ?? '{}') as { pid: number }).pid };
    };
    const before = await pause();
    evidence.push(`kubelet runs pod "tray": sandbox ${sandboxId.slice(0, 13)}, pause pid ${before.pid}, IP ${before.ip}`);
    let seen = 0;
    let backOff = '';
    await waitFor(
      'two restarts by the kubelet',
      async () => {
        const pod = await kubelet.pod('tray');
        const crasher = pod?.status.containerStatuses?.find((c) => c.name === 'crasher');
        if (crasher === undefined) return undefined;
        if (crasher.state.waiting?.reason === 'CrashLoopBackOff') backOff = 'CrashLoopBackOff';
        if (crasher.restartCount > seen) {
          seen = crasher.restartCount;
          const now = await pause();
          evidence.push(
            `+${((Date.now() - started) / 1000).toFixed(0)} s: the kubelet restarted "crasher" (restart ${seen}); pause pid ${now.pid}, IP ${now.ip}`,
          );
        }
        return seen >= 2 ? true : undefined;
      },
      120_000,
    );
    const after = await pause();
    const web = (await kubelet.pod('tray'))?.status.containerStatuses?.find((c) => c.name === 'web');
    const count = (await sandboxes()).length;
    evidence.push(
      `the kubelet's status said ${backOff || 'no back-off'} between restarts; "web" restarts: ${String(web?.restartCount)}`,
    );
    evidence.push(`sandboxes of the pod: ${count} (the same one, same pause pid and IP)`);
    return {
      evidence,
      pass: backOff !== '' && count === 1 && after.pid === before.pid && after.ip === before.ip && web?.restartCount === 0,
    };
  } finally {
    await kubelet.removeAllPods();
    // The kubelet stops the pod at once and removes its sandbox only at its next GC: the demo
    // removes it through the CRI, as for its other pods.
    await waitFor('the kubelet to stop the pod', async () =>
      sandboxId === '' ||
      (await cri.runtime.podSandboxStatus({ podSandboxId: sandboxId })).status?.state === PodSandboxState.SANDBOX_NOTREADY
        ? true
        : undefined,
    ).catch(() => undefined);
    await kubelet.stop();
    if (sandboxId !== '') await cri.runtime.removePodSandbox({ podSandboxId: sandboxId }).catch(() => undefined);
    await kubelet.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function pauseImage(cri: CriClient): Promise<Finding> {
  const status = await cri.runtime.status({ verbose: true });
  const configured = JSON.parse(status.info['pauseImage'] ?? '""') as string;
  const { image } = await cri.image.imageStatus({ image: { image: configured } });
  return {
    evidence: [
      `pause image in force (Status info): ${configured}`,
      image === undefined ? 'not in the image store' : `in the store as ${image.id}, pinned: ${String(image.pinned)}`,
    ],
    pass: image?.pinned === true,
  };
}

async function cgroupDriver(cri: CriClient): Promise<Finding> {
  const response = await cri.runtime.runtimeConfig({});
  const status = await cri.runtime.status({ verbose: true });
  const reported = response.linux?.cgroupDriver === CgroupDriver.SYSTEMD ? 'systemd' : 'cgroupfs';
  const configured = JSON.parse(status.info['cgroupDriver'] ?? '""') as string;
  return {
    evidence: [
      `RuntimeConfig.linux.cgroup_driver: ${CgroupDriver[response.linux?.cgroupDriver ?? CgroupDriver.UNRECOGNIZED]} — what a kubelet ≥ 1.28 adopts`,
      `icetray's configured driver: ${configured}, cgroup v${JSON.stringify(JSON.parse(status.info['cgroupVersion'] ?? 'null'))}`,
    ],
    pass: reported === configured,
  };
}

export async function demo(values: Values): Promise<number> {
  const only = values['only'];
  if (typeof only === 'string' && !(STEPS as readonly string[]).includes(only)) {
    throw new InvalidArgumentError(`--only must be one of ${STEPS.join(', ')}`);
  }
  if (typeof only === 'string' && values['kubelet'] === true)
    throw new InvalidArgumentError('--only and --kubelet exclude each other');
  const steps: Step[] = values['kubelet'] === true ? ['kubelet'] : typeof only === 'string' ? [only as Step] : [...STEPS];
  const { config } = loadFromOptions(values);
  const cri = connectCri(config.socket, 30_000);
  const stage = new Stage(cri);
  const started = Date.now();
  let failed = 0;
  try {
    await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
    const run: Record<Step, () => Promise<Finding>> = {
      network: () => network(stage),
      ipc: () => ipc(stage),
      pid: () => pid(stage),
      restart: () => restart(stage, cri),
      'pause-image': () => pauseImage(cri),
      'cgroup-driver': () => cgroupDriver(cri),
      kubelet: () => kubeletRestart(cri, config.socket),
    };
    for (const [i, step] of steps.entries()) {
      let finding: Finding;
      try {
        finding = await run[step]();
      } catch (err) {
        finding = { evidence: [`error: ${messageOf(err)}`], pass: false };
      }
      if (!finding.pass) failed++;
      process.stdout.write(
        `(${i + 1}/${steps.length}) ${step}\n${finding.evidence.map((line) => `    ${line}\n`).join('')}    ${finding.pass ? 'PASS' : 'FAIL'}\n`,
      );
    }
  } finally {
    await stage.cleanUp();
    cri.close();
  }
  process.stdout.write(
    `${steps.length - failed} of ${steps.length} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s; the demo's pods are removed\n`,
  );
  return failed === 0 ? 0 : 1;
}
