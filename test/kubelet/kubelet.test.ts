import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_BUSYBOX_IMAGE } from '../../src/images/store.js';
import { isAlive } from '../helpers/pods.js';
import {
  kubeletMissing,
  startKubeletNode,
  waitFor,
  type ContainerStatus,
  type KubeletNode,
  type PodStatus,
} from '../helpers/kubelet.js';

/**
 * The client icetray exists for: a real kubelet (v1.37, standalone, static pods) drives a fresh
 * icetray over its socket, and the tests look at what a cluster user and a node admin would see —
 * the kubelet's own API (/pods, /containerLogs, /run, /stats/summary), the kubelet's cgroups, the
 * processes — not at icetray's internals.
 */
const skip = kubeletMissing();
const image = BUILTIN_BUSYBOX_IMAGE;
const SLOW = 150_000;

let node: KubeletNode;
/** Set once the node is up: what afterAll must close. */
let started: KubeletNode | undefined;

/** The status of a container of a static pod, once the kubelet reports it. */
async function container(pod: string, name: string, init = false): Promise<ContainerStatus | undefined> {
  const status = await node.status(pod);
  return (init ? status?.initContainerStatuses : status?.containerStatuses)?.find((c) => c.name === name);
}

async function running(pod: string, name: string): Promise<ContainerStatus> {
  return waitFor(`${pod}/${name} running`, async () => {
    const c = await container(pod, name);
    return c?.state.running !== undefined ? c : undefined;
  });
}

/** The CRI id of a container the kubelet named `icetray://ID`. */
function criId(c: ContainerStatus): string {
  const [runtime, id] = (c.containerID ?? '').split('://');
  expect(runtime).toBe('icetray');
  return id ?? '';
}

/** The host pid of a container's first process, from icetray's verbose ContainerStatus. */
async function pidOf(c: ContainerStatus): Promise<number> {
  const status = await node.cri.runtime.containerStatus({ containerId: criId(c), verbose: true });
  return (JSON.parse(status.info['info'] ?? '{}') as { pid: number }).pid;
}

async function uidOf(pod: string): Promise<string> {
  const found = (await node.pods()).find((p) => p.metadata.name === `${pod}-${node.nodeName}`);
  if (found === undefined) throw new Error(`no pod ${pod}`);
  return found.metadata.uid;
}

/** The sandboxes icetray holds for a pod, as the kubelet labelled them. */
async function sandboxesOf(pod: string): Promise<{ id: string; state: number }[]> {
  const uid = await uidOf(pod);
  return (await node.cri.runtime.listPodSandbox({ filter: { labelSelector: { 'io.kubernetes.pod.uid': uid } } })).items;
}

const logs = (pod: string, name: string, query = ''): Promise<string> =>
  node.get(`/containerLogs/default/${pod}-${node.nodeName}/${name}${query}`);

/** A namespace of a process, as the kernel names it (`net:[4026…]`). */
const namespaceOf = (pid: number, kind: string): string => readlinkSync(`/proc/${String(pid)}/ns/${kind}`);

/** For a v1 controller, the cgroup path (relative to the hierarchy) a process is in. */
function cgroupOf(pid: number, controller: string): string {
  const line = readFileSync(`/proc/${String(pid)}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes(controller));
  return line?.split(':')[2] ?? '';
}
const cgroupValue = (controller: string, path: string, file: string): string =>
  readFileSync(`/sys/fs/cgroup/${controller}${path}/${file}`, 'utf8').trim();

describe.skipIf(skip !== undefined)(`a real kubelet drives icetray (${skip ?? 'kubelet built, root'})`, () => {
  beforeAll(async () => {
    node = started = await startKubeletNode();
  }, SLOW);
  afterAll(async () => {
    await started?.close();
  }, SLOW);

  it(
    'the containers of a pod share localhost and one IP, held by the pause process',
    async () => {
      await node.addPod({
        metadata: { name: 'pair' },
        spec: {
          containers: [
            {
              name: 'server',
              image,
              command: [
                'sh',
                '-c',
                'mkdir /www && echo hello-over-localhost > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www',
              ],
            },
            {
              name: 'client',
              image,
              command: ['sh', '-c', 'until wget -q -O - http://127.0.0.1:8080/index.html; do sleep 0.3; done; exec sleep 600'],
            },
          ],
        },
      });
      const server = await running('pair', 'server');
      const client = await running('pair', 'client');
      await waitFor('the client to reach the server over localhost', async () =>
        (await logs('pair', 'client')).includes('hello-over-localhost') ? true : undefined,
      );
      const status = (await node.status('pair')) as PodStatus;
      const [a, b, c] = node.net.subnet.split('.');
      expect(status.podIP?.startsWith(`${a ?? ''}.${b ?? ''}.${c ?? ''}.`)).toBe(true);
      const [sandbox] = await sandboxesOf('pair');
      const pause = JSON.parse(
        (await node.cri.runtime.podSandboxStatus({ podSandboxId: sandbox?.id ?? '', verbose: true })).info['info'] ?? '{}',
      ) as { pid: number };
      for (const kind of ['net', 'ipc', 'uts']) {
        const held = namespaceOf(pause.pid, kind);
        expect(namespaceOf(await pidOf(server), kind)).toBe(held);
        expect(namespaceOf(await pidOf(client), kind)).toBe(held);
        expect(held).not.toBe(namespaceOf(process.pid, kind));
      }
    },
    SLOW,
  );

  it(
    'a crashing container is restarted in the same sandbox, with a growing back-off, and its previous logs kept',
    async () => {
      // It fails twice, then runs: the count lives in an emptyDir, which outlives each attempt.
      // (While it crashes, the kubelet removes each dead attempt when the next one dies, so a
      // "previous" log is there to read only once an attempt keeps running.)
      const script =
        'n=$(($(cat /data/n 2>/dev/null || echo 0) + 1)); echo $n > /data/n; echo attempt $n; [ $n -ge 3 ] && exec sleep 600; exit 3';
      await node.addPod({
        metadata: { name: 'crash' },
        spec: {
          restartPolicy: 'Always',
          containers: [
            { name: 'app', image, command: ['sh', '-c', script], volumeMounts: [{ name: 'data', mountPath: '/data' }] },
          ],
          volumes: [{ name: 'data', emptyDir: {} }],
        },
      });
      // When each restart is first seen: the kubelet waits 10 s, then 20 s (CrashLoopBackOff).
      const seen: number[] = [];
      let backOff = false;
      const final = await waitFor(
        'two restarts',
        async () => {
          const c = await container('crash', 'app');
          if (c === undefined) return undefined;
          while (seen.length < c.restartCount) seen.push(Date.now());
          if (c.state.waiting?.reason === 'CrashLoopBackOff') backOff = true;
          return c.restartCount >= 2 && c.state.running !== undefined ? c : undefined;
        },
        90_000,
      );
      expect(backOff).toBe(true);
      expect(final.lastState.terminated?.exitCode).toBe(3);
      // The kubelet's back-off, not an immediate restart: the second restart waits seconds.
      expect((seen[1] ?? 0) - (seen[0] ?? 0)).toBeGreaterThan(5_000);
      // One sandbox the whole time: the pod's IP and namespaces stayed while its container died.
      const sandboxes = await sandboxesOf('crash');
      expect(sandboxes).toHaveLength(1);
      expect(await logs('crash', 'app', '?previous=true')).toBe('attempt 2\n');
      expect(await logs('crash', 'app')).toBe('attempt 3\n');
      await node.removePod('crash');
    },
    SLOW,
  );

  it(
    'QoS classes: each pod in its class cgroup under the kubelet root, with the limits the spec asks',
    async () => {
      const app = (resources: object): object[] => [{ name: 'app', image, command: ['sleep', '600'], resources }];
      await node.addPod({
        metadata: { name: 'guaranteed' },
        spec: { containers: app({ requests: { cpu: '200m', memory: '64Mi' }, limits: { cpu: '200m', memory: '64Mi' } }) },
      });
      await node.addPod({
        metadata: { name: 'burstable' },
        spec: { containers: app({ requests: { cpu: '100m', memory: '32Mi' }, limits: { memory: '128Mi' } }) },
      });
      await node.addPod({ metadata: { name: 'besteffort' }, spec: { containers: app({}) } });
      const expected = { guaranteed: 'kubepods', burstable: 'kubepods/burstable', besteffort: 'kubepods/besteffort' };
      for (const [pod, qosDir] of Object.entries(expected)) {
        const pid = await pidOf(await running(pod, 'app'));
        const podDir = `${node.cgroupRoot}/${qosDir}/pod${await uidOf(pod)}`;
        for (const controller of ['memory', 'cpu', 'pids']) expect(cgroupOf(pid, controller).startsWith(`${podDir}/`)).toBe(true);
      }
      const guaranteed = cgroupOf(await pidOf(await running('guaranteed', 'app')), 'memory');
      expect(cgroupValue('memory', guaranteed, 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
      const guaranteedCpu = cgroupOf(await pidOf(await running('guaranteed', 'app')), 'cpu');
      expect(cgroupValue('cpu', guaranteedCpu, 'cpu.cfs_quota_us')).toBe('20000');
      expect(cgroupValue('cpu', guaranteedCpu, 'cpu.shares')).toBe('204');
      const burstable = await pidOf(await running('burstable', 'app'));
      expect(cgroupValue('memory', cgroupOf(burstable, 'memory'), 'memory.limit_in_bytes')).toBe(String(128 * 1024 * 1024));
      expect(cgroupValue('cpu', cgroupOf(burstable, 'cpu'), 'cpu.cfs_quota_us')).toBe('-1');
      expect(cgroupValue('cpu', cgroupOf(burstable, 'cpu'), 'cpu.shares')).toBe('102');
      // BestEffort gets the smallest share the kernel allows (Kubernetes' MinShares).
      expect(cgroupValue('cpu', cgroupOf(await pidOf(await running('besteffort', 'app')), 'cpu'), 'cpu.shares')).toBe('2');
      for (const pod of Object.keys(expected)) await node.removePod(pod);
    },
    SLOW,
  );

  it(
    'probes: an HTTP readiness probe makes a container ready; a failing exec liveness probe restarts one; exec through the kubelet',
    async () => {
      await node.addPod({
        metadata: { name: 'probed' },
        spec: {
          containers: [
            {
              name: 'web',
              image,
              command: ['sh', '-c', 'mkdir /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www'],
              readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
            },
            {
              name: 'live',
              image,
              command: ['sh', '-c', 'touch /tmp/alive && exec sleep 600'],
              livenessProbe: { exec: { command: ['test', '-f', '/tmp/alive'] }, periodSeconds: 1, failureThreshold: 1 },
            },
          ],
        },
      });
      await waitFor('web ready', async () => ((await container('probed', 'web'))?.ready === true ? true : undefined));
      const live = await waitFor('live ready', async () => {
        const c = await container('probed', 'live');
        return c?.ready === true ? c : undefined;
      });
      expect(live.restartCount).toBe(0);
      // The kubelet's /run is ExecSync: the probe's file goes, and the probe fails.
      expect(await node.post(`/run/default/probed-${node.nodeName}/live?cmd=ls+/tmp`)).toContain('alive');
      await node.post(`/run/default/probed-${node.nodeName}/live?cmd=rm+/tmp/alive`);
      const restarted = await waitFor('the liveness probe to restart live', async () => {
        const c = await container('probed', 'live');
        return c !== undefined && c.restartCount >= 1 && c.state.running !== undefined ? c : undefined;
      });
      expect(restarted.containerID).not.toBe(live.containerID);
      expect((await container('probed', 'web'))?.restartCount).toBe(0);
      await node.removePod('probed');
    },
    SLOW,
  );

  it(
    'init containers run first, one after the other, to completion, sharing an emptyDir with the app',
    async () => {
      const step = (name: string): object => ({
        name,
        image,
        command: ['sh', '-c', `echo ${name} >> /work/order`],
        volumeMounts: [{ name: 'work', mountPath: '/work' }],
      });
      await node.addPod({
        metadata: { name: 'init' },
        spec: {
          initContainers: [step('first'), step('second')],
          containers: [{ ...step('app'), command: ['sh', '-c', 'cat /work/order && exec sleep 600'] }],
          volumes: [{ name: 'work', emptyDir: {} }],
        },
      });
      await running('init', 'app');
      for (const name of ['first', 'second']) {
        const c = await container('init', name, true);
        expect(c?.state.terminated?.exitCode).toBe(0);
      }
      await waitFor('the app to print the order', async () =>
        (await logs('init', 'app')) === 'first\nsecond\n' ? true : undefined,
      );
      await node.removePod('init');
    },
    SLOW,
  );

  it(
    'environment variables reach the process as the kubelet sent them, names like data-1 included',
    async () => {
      // A ConfigMap's keys become such names (envFrom); some shells drop them, the runtime must not.
      await node.addPod({
        metadata: { name: 'environ' },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'app',
              image,
              command: ['cat', '/proc/self/environ'],
              env: [
                { name: 'data-1', value: 'value-1' },
                { name: 'SPACED', value: 'a b  c' },
              ],
            },
          ],
        },
      });
      const environ = await waitFor('the app to exit', async () =>
        (await container('environ', 'app'))?.state.terminated !== undefined ? logs('environ', 'app') : undefined,
      );
      const vars = environ.split('\0');
      expect(vars).toContain('data-1=value-1');
      expect(vars).toContain('SPACED=a b  c');
      await node.removePod('environ');
    },
    SLOW,
  );

  it(
    'a hostPort on 127.0.0.1 reaches the container',
    async () => {
      const hostPort = 18_000 + (process.pid % 1000);
      await node.addPod({
        metadata: { name: 'porter' },
        spec: {
          containers: [
            {
              name: 'web',
              image,
              command: [
                'sh',
                '-c',
                'mkdir /www && echo through-the-host-port > /www/index.html && exec httpd -f -p 8080 -h /www',
              ],
              ports: [{ containerPort: 8080, hostPort, hostIP: '127.0.0.1', protocol: 'TCP' }],
            },
          ],
        },
      });
      await running('porter', 'web');
      const body = await waitFor('the host port to answer', async () => {
        const res = await fetch(`http://127.0.0.1:${String(hostPort)}/index.html`, { signal: AbortSignal.timeout(2000) });
        return res.ok ? res.text() : undefined;
      });
      expect(body).toBe('through-the-host-port\n');
      await node.removePod('porter');
    },
    SLOW,
  );

  it(
    'a kubelet restart and an icetray crash (SIGKILL) leave a running pod as it was',
    async () => {
      await node.addPod({
        metadata: { name: 'steady' },
        spec: { containers: [{ name: 'app', image, command: ['sleep', '600'] }] },
      });
      const before = await running('steady', 'app');
      const [sandbox] = await sandboxesOf('steady');
      await node.restartKubelet();
      const afterKubelet = await running('steady', 'app');
      await node.crashIcetray();
      // Give the kubelet several sync loops against the restarted icetray.
      await sleep(8000);
      const afterIcetray = await running('steady', 'app');
      for (const after of [afterKubelet, afterIcetray]) {
        expect(after.containerID).toBe(before.containerID);
        expect(after.restartCount).toBe(0);
        expect(after.state.running?.startedAt).toBe(before.state.running?.startedAt);
      }
      expect((await sandboxesOf('steady')).map((s) => s.id)).toEqual([sandbox?.id]);
    },
    SLOW,
  );

  it(
    'a pod whose manifest goes is stopped: its processes end and the kubelet removes its cgroup',
    async () => {
      const app = await running('steady', 'app');
      const pid = await pidOf(app);
      const uid = await uidOf('steady');
      const [sandbox] = await sandboxesOf('steady');
      const pause = JSON.parse(
        (await node.cri.runtime.podSandboxStatus({ podSandboxId: sandbox?.id ?? '', verbose: true })).info['info'] ?? '{}',
      ) as { pid: number };
      await node.removePod('steady');
      await waitFor('the pod to be gone from the kubelet', async () =>
        (await node.status('steady')) === undefined ? true : undefined,
      );
      await waitFor('its processes to end', () => (!isAlive(pid) && !isAlive(pause.pid) ? true : undefined));
      const podCgroup = node.cgroupFile('memory', `kubepods/besteffort/pod${uid}`);
      await waitFor('its pod cgroup to go', () => (existsSync(podCgroup) ? undefined : true));
    },
    SLOW,
  );

  it(
    "/stats/summary has every container's writable layer and CPU rate, and each pod's",
    async () => {
      await running('pair', 'server');
      type Cpu = { usageNanoCores?: number; usageCoreNanoSeconds?: number };
      type Summary = {
        pods: {
          podRef: { name: string };
          cpu?: Cpu;
          containers: { name: string; cpu?: Cpu; rootfs?: { usedBytes?: number; inodesUsed?: number } }[];
        }[];
      };
      // The CPU rate needs two samples: the kubelet asks the runtime every ~10 s.
      const pair = await waitFor(
        'the pair pod with CPU rates',
        async () => {
          const summary = JSON.parse(await node.get('/stats/summary')) as Summary;
          const pod = summary.pods.find((p) => p.podRef.name === `pair-${node.nodeName}`);
          return pod?.cpu?.usageNanoCores !== undefined ? pod : undefined;
        },
        60_000,
      );
      expect(pair.containers.map((c) => c.name).sort()).toEqual(['client', 'server']);
      for (const c of pair.containers) {
        expect(c.cpu?.usageNanoCores).toBeTypeOf('number');
        expect(c.cpu?.usageCoreNanoSeconds).toBeGreaterThan(0);
        // The server wrote /www/index.html into its writable layer.
        expect(c.rootfs?.usedBytes).toBeGreaterThan(0);
        expect(c.rootfs?.inodesUsed).toBeGreaterThan(0);
      }
    },
    SLOW,
  );
});
