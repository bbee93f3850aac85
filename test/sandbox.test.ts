import { credentials, status as grpcStatus } from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LinuxContainerResources,
  NamespaceMode,
  PodSandboxFilter,
  PodSandboxState,
  PortMapping,
  RuntimeServiceClient,
  type PodSandboxConfig,
  type StreamPodSandboxesRequest,
  type StreamPodSandboxesResponse,
} from '../src/generated/api.js';
import { createRuntime } from '../src/server/runtime.js';
import { startServer } from '../src/server/serve.js';
import { connectCri, type CriClient } from './helpers/cri.js';
import {
  inode,
  ipForward,
  isAlive,
  podConfig,
  restoreIpForward,
  sh,
  writeTestNetwork,
  type TestNetwork,
} from './helpers/pods.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { isRoot } from './helpers/tools.js';

interface Info {
  pid: number;
  netns: string | null;
  namespaces: Record<string, { path: string; inode: number }>;
  network: { ip: string; result: { interfaces: { name: string; sandbox?: string }[] } } | null;
  podDir: string;
}

describe.skipIf(!isRoot)('pod sandboxes on the real kernel (needs root: namespaces, mounts, bridges)', () => {
  let t: TestServer;
  let net: TestNetwork;
  let ipForwardBefore: string;
  const joined: ChildProcess[] = [];

  async function run(config: PodSandboxConfig): Promise<string> {
    return (await t.cri.runtime.runPodSandbox({ config })).podSandboxId;
  }
  async function info(id: string, cri: CriClient = t.cri): Promise<Info> {
    const response = await cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    return JSON.parse(response.info['info'] ?? '{}') as Info;
  }
  /** A "container-to-be": a process joined to the pod's namespaces with nsenter. */
  async function joinPod(id: string, command: string[], pid = true): Promise<number> {
    const { namespaces } = await info(id);
    const args = ['net', 'ipc', 'uts'].map((ns) => `--${ns}=${namespaces[ns]?.path ?? ''}`);
    if (pid && namespaces['pid'] !== undefined) args.push(`--pid=${namespaces['pid'].path}`);
    const child = spawn('nsenter', [...args, '--', ...command], { stdio: 'ignore' });
    joined.push(child);
    // nsenter forks to enter a PID namespace: the joined process is its child.
    for (let i = 0; i < 100; i++) {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
      const target = pid && namespaces['pid'] !== undefined ? Number(children.split(' ')[0]) : (child.pid ?? 0);
      if (target > 0 && readFileSync(`/proc/${target}/cmdline`, 'utf8').startsWith(command[0] ?? '')) return target;
      await sleep(10);
    }
    throw new Error(`could not join ${command.join(' ')} to pod ${id}`);
  }
  function inNetns(id: string, command: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return info(id).then((i) => sh('nsenter', [`--net=${i.netns ?? ''}`, '--', ...command]));
  }

  beforeAll(async () => {
    ipForwardBefore = ipForward();
    t = await startTestServer();
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
  });
  afterAll(async () => {
    for (const child of joined) child.kill('SIGKILL');
    const { items } = await t.cri.runtime.listPodSandbox({});
    for (const pod of items) await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await t.close();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
  });

  it('starts pause holding new net, ipc, uts and pid namespaces, and reports the pod READY', async () => {
    const id = await run(podConfig());
    const status = await t.cri.runtime.podSandboxStatus({ podSandboxId: id });
    expect(status.status?.state).toBe(PodSandboxState.SANDBOX_READY);
    const { pid, namespaces } = await info(id);
    expect(isAlive(pid)).toBe(true);
    for (const ns of ['net', 'ipc', 'uts', 'pid']) {
      expect(inode(`/proc/${pid}/ns/${ns}`)).not.toBe(inode(`/proc/self/ns/${ns}`));
      // The pin is the same namespace as pause's.
      expect(namespaces[ns]?.inode).toBe(inode(`/proc/${pid}/ns/${ns}`));
    }
    // pause sits in its own cgroup inside the pod's, laid out as the kubelet does (cgroupfs).
    const config = (await t.cri.runtime.podSandboxStatus({ podSandboxId: id })).status?.metadata;
    expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(`:memory:/kubepods/burstable/pod${config?.uid ?? ''}/${id}\n`);
    // The pod's /dev/shm, a tmpfs its containers will share.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).toMatch(new RegExp(`/sandboxes/${id}/shm .* - tmpfs shm `));
  });

  it('echoes metadata, labels, annotations and namespace options back', async () => {
    const config = podConfig();
    const id = await run(config);
    const { status } = await t.cri.runtime.podSandboxStatus({ podSandboxId: id });
    expect(status?.metadata).toEqual(config.metadata);
    expect(status?.labels).toEqual(config.labels);
    expect(status?.annotations).toEqual(config.annotations);
    expect(status?.linux?.namespaces?.options).toEqual(config.linux?.securityContext?.namespaceOptions);
    expect(status?.createdAt).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);
  });

  it('joins two processes to a pod: both share net, ipc and uts with pause', async () => {
    const id = await run(podConfig());
    const { pid } = await info(id);
    const a = await joinPod(id, ['sleep', '300']);
    const b = await joinPod(id, ['sleep', '301']);
    for (const ns of ['net', 'ipc', 'uts', 'pid']) {
      expect(inode(`/proc/${a}/ns/${ns}`)).toBe(inode(`/proc/${pid}/ns/${ns}`));
      expect(inode(`/proc/${b}/ns/${ns}`)).toBe(inode(`/proc/${pid}/ns/${ns}`));
    }
  });

  it('gives each pod its own IP on the bridge, and the pods ping each other', async () => {
    const one = await run(podConfig());
    const two = await run(podConfig());
    const [ipOne, ipTwo] = await Promise.all(
      [one, two].map(async (id) => (await t.cri.runtime.podSandboxStatus({ podSandboxId: id })).status?.network?.ip),
    );
    expect(ipOne).toMatch(new RegExp(`^10\\.254\\.${net.subnet.split('.')[2] ?? ''}\\.\\d+$`));
    expect(ipTwo).not.toBe(ipOne);
    const addr = await inNetns(one, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(addr.stdout).toContain(`inet ${ipOne ?? ''}/`);
    const ping = await inNetns(one, ['ping', '-c', '1', '-W', '2', ipTwo ?? '']);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    const lo = await inNetns(one, ['ip', '-o', 'link', 'show', 'lo']);
    expect(lo.stdout).toMatch(/state UNKNOWN|LOWER_UP/);
  });

  it('a listener on 127.0.0.1 in one process of a pod is reached from the other, not from another pod', async () => {
    const id = await run(podConfig());
    const other = await run(podConfig());
    await joinPod(
      id,
      ['node', '-e', "require('net').createServer((s) => s.end('hello from the pod\\n')).listen(9090, '127.0.0.1')"],
      false,
    );
    const client =
      "const s = require('net').connect(9090, '127.0.0.1'); s.on('data', (d) => process.stdout.write(d)); s.on('error', (e) => { console.error(e.code); process.exit(3); })";
    let same = { code: -1, stdout: '', stderr: '' };
    for (let i = 0; i < 50 && same.code !== 0; i++) {
      same = await inNetns(id, ['node', '-e', client]);
      if (same.code !== 0) await sleep(100);
    }
    expect(same.stdout).toBe('hello from the pod\n');
    const fromOther = await inNetns(other, ['node', '-e', client]);
    expect(fromOther.code).toBe(3);
    expect(fromOther.stderr).toContain('ECONNREFUSED');
  });

  it('makes a host port on 127.0.0.1 reach the pod (portmap), and CNI CHECK passes', async () => {
    const id = await run(
      podConfig({ portMappings: [PortMapping.fromPartial({ containerPort: 9091, hostPort: 18091, hostIp: '127.0.0.1' })] }),
    );
    // Listening on the pod's eth0 address: DNAT delivers there.
    await joinPod(
      id,
      ['node', '-e', "require('net').createServer((s) => s.end('through the host port\\n')).listen(9091)"],
      false,
    );
    let answer = '';
    for (let i = 0; i < 50 && answer === ''; i++) {
      answer = await new Promise<string>((resolve) => {
        const socket = connect(18091, '127.0.0.1');
        let data = '';
        socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
        socket.on('end', () => resolve(data));
        socket.on('error', () => resolve(''));
      });
      if (answer === '') await sleep(100);
    }
    expect(answer).toBe('through the host port\n');
    // portmap's IPv6 CHECK bug (plugins#819) is not reported as this pod's failure.
    expect((await info(id)) as unknown as { cniCheck: string }).toMatchObject({ cniCheck: 'ok' });
  });

  it('with pid=POD, pause is PID 1 and the pod sees its processes', async () => {
    const id = await run(podConfig());
    await joinPod(id, ['sleep', '302']);
    const { namespaces } = await info(id);
    const ps = await sh('nsenter', [
      `--pid=${namespaces['pid']?.path ?? ''}`,
      '--',
      'unshare',
      '--mount',
      '--mount-proc',
      'ps',
      '-e',
      '-o',
      'pid=,comm=',
    ]);
    const processes = ps.stdout
      .trim()
      .split('\n')
      .map((line) => line.trim().split(/\s+/));
    expect(processes[0]).toEqual(['1', 'pause']);
    expect(processes.map((p) => p[1])).toContain('sleep');
  });

  it.each([
    ['CONTAINER', NamespaceMode.CONTAINER],
    ['NODE', NamespaceMode.NODE],
  ])('with pid=%s, pause is not PID 1 of a pod PID namespace', async (_name, mode) => {
    const id = await run(podConfig({}, mode));
    const { pid, namespaces } = await info(id);
    expect(namespaces['pid']).toBeUndefined();
    expect(inode(`/proc/${pid}/ns/pid`)).toBe(inode('/proc/self/ns/pid'));
    // NSpid lists the pid in each nested namespace: one entry means the host's only.
    const nspid = /NSpid:\s+(.*)/
      .exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
      ?.trim()
      .split(/\s+/);
    expect(nspid).toEqual([String(pid)]);
  });

  it('keeps pause, the IP and the namespaces when a joined process is killed (restart independence)', async () => {
    const id = await run(podConfig());
    const before = await info(id);
    const victim = await joinPod(id, ['sleep', '303']);
    process.kill(victim, 'SIGKILL');
    await sleep(100);
    expect(isAlive(victim)).toBe(false);
    const after = await info(id);
    expect(isAlive(after.pid)).toBe(true);
    expect(after.pid).toBe(before.pid);
    expect(after.network?.ip).toBe(before.network?.ip);
    for (const ns of ['net', 'ipc', 'uts', 'pid'])
      expect(inode(`/proc/${after.pid}/ns/${ns}`)).toBe(before.namespaces[ns]?.inode);
    // A new attempt of the "container" joins the very same namespaces.
    const again = await joinPod(id, ['sleep', '304']);
    expect(inode(`/proc/${again}/ns/net`)).toBe(before.namespaces['net']?.inode);
  });

  it('applies namespaced sysctls inside the pod, not on the node', async () => {
    const nodeValue = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim();
    const id = await run(
      podConfig({
        linux: { ...podConfig().linux, sysctls: { 'net.ipv4.ip_unprivileged_port_start': '100', 'kernel.shm_rmid_forced': '1' } },
      } as Partial<PodSandboxConfig>),
    );
    const { namespaces } = await info(id);
    const inPod = await sh('nsenter', [
      `--net=${namespaces['net']?.path ?? ''}`,
      `--ipc=${namespaces['ipc']?.path ?? ''}`,
      'cat',
      '/proc/sys/net/ipv4/ip_unprivileged_port_start',
      '/proc/sys/kernel/shm_rmid_forced',
    ]);
    expect(inPod.stdout.split('\n').slice(0, 2)).toEqual(['100', '1']);
    expect(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()).toBe(nodeValue);
  });

  it('writes the pod hostname, resolv.conf from dns_config and a hosts file', async () => {
    const config = podConfig({
      dnsConfig: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
    });
    const id = await run(config);
    const { podDir, namespaces, network } = await info(id);
    expect(readFileSync(join(podDir, 'resolv.conf'), 'utf8')).toBe(
      'nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n',
    );
    expect(readFileSync(join(podDir, 'hosts'), 'utf8')).toContain(`${network?.ip ?? '?'}\t${config.hostname}`);
    const hostname = await sh('nsenter', [`--uts=${namespaces['uts']?.path ?? ''}`, 'hostname']);
    expect(hostname.stdout.trim()).toBe(config.hostname);
  });

  it('stop releases the IP and stops pause; remove leaves no pin, veth, lease, cgroup or process', async () => {
    const config = podConfig();
    const uid = config.metadata?.uid ?? '';
    const id = await run(config);
    const before = await info(id);
    const veth = before.network?.result.interfaces.find((i) => i.name.startsWith('veth'))?.name ?? '';
    expect(veth).not.toBe('');
    expect(existsSync(join(net.dataDir, 'icetray-test', before.network?.ip ?? ''))).toBe(true);

    await t.cri.runtime.stopPodSandbox({ podSandboxId: id });
    const stopped = await t.cri.runtime.podSandboxStatus({ podSandboxId: id });
    expect(stopped.status?.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    expect(stopped.status?.network?.ip).toBe('');
    expect(isAlive(before.pid)).toBe(false);
    expect(existsSync(join(net.dataDir, 'icetray-test', before.network?.ip ?? ''))).toBe(false);
    expect((await sh('ip', ['link', 'show', veth])).code).not.toBe(0);

    await t.cri.runtime.removePodSandbox({ podSandboxId: id });
    expect((await t.cri.runtime.listPodSandbox({ filter: { id } })).items).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(id);
    expect(existsSync(before.podDir)).toBe(false);
    expect(existsSync(join(t.runtime.loaded.config.stateDir, 'sandboxes', id))).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/memory/kubepods/burstable/pod${uid}`)).toBe(false);
  });

  it('stop and remove are idempotent, unknown ids included', async () => {
    const id = await run(podConfig());
    await t.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await t.cri.runtime.stopPodSandbox({ podSandboxId: id });
    expect((await t.cri.runtime.podSandboxStatus({ podSandboxId: id })).status?.state).toBe(PodSandboxState.SANDBOX_NOTREADY);
    await t.cri.runtime.removePodSandbox({ podSandboxId: id });
    await t.cri.runtime.removePodSandbox({ podSandboxId: id });
    await t.cri.runtime.stopPodSandbox({ podSandboxId: 'f'.repeat(64) });
    await expect(t.cri.runtime.podSandboxStatus({ podSandboxId: id })).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
  });

  it('rejects bad input with a clear status and leaves nothing half-made', async () => {
    const sandboxesBefore = readdirSync(join(t.runtime.loaded.config.rootDir, 'sandboxes')).length;
    const pausesBefore = (await sh('pgrep', ['-c', '-f', `${t.runtime.pauseBinary} -d`])).stdout.trim();
    await expect(t.cri.runtime.runPodSandbox({ config: podConfig({ metadata: undefined }) })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: 'sandbox config: metadata is required',
    });
    const nodeWide = podConfig();
    nodeWide.linux = {
      ...nodeWide.linux,
      cgroupParent: '',
      sysctls: { 'fs.file-max': '5' },
      securityContext: nodeWide.linux?.securityContext,
      overhead: undefined,
      resources: undefined,
    };
    await expect(t.cri.runtime.runPodSandbox({ config: nodeWide })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringContaining('sysctl "fs.file-max" is not namespaced') as string,
    });
    const twice = podConfig();
    await run(twice);
    await expect(t.cri.runtime.runPodSandbox({ config: twice })).rejects.toMatchObject({ code: grpcStatus.ALREADY_EXISTS });
    // A value the kernel refuses fails the pod, and its namespaces go with it.
    const refused = podConfig();
    refused.linux = { ...nodeWide.linux, sysctls: { 'net.ipv4.ip_unprivileged_port_start': 'not-a-number' } };
    await expect(t.cri.runtime.runPodSandbox({ config: refused })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringContaining('net.ipv4.ip_unprivileged_port_start: Invalid argument') as string,
    });
    expect(readdirSync(join(t.runtime.loaded.config.rootDir, 'sandboxes')).length).toBe(sandboxesBefore + 1);
    expect((await sh('pgrep', ['-c', '-f', `${t.runtime.pauseBinary} -d`])).stdout.trim()).toBe(String(Number(pausesBefore) + 1));
  });

  it('records pod-level resources of an in-place resize (UpdatePodSandboxResources); an unknown pod is NOT_FOUND', async () => {
    const id = await run(podConfig());
    await t.cri.runtime.updatePodSandboxResources({
      podSandboxId: id,
      resources: LinuxContainerResources.fromPartial({
        cpuQuota: 50_000n,
        cpuPeriod: 100_000n,
        memoryLimitInBytes: 268_435_456n,
      }),
    });
    const status = await t.cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    const info = JSON.parse(status.info['info'] ?? '{}') as { resources: Record<string, string> | null };
    expect(info.resources).toMatchObject({ cpuQuota: '50000', cpuPeriod: '100000', memoryLimitInBytes: '268435456' });
    await expect(
      t.cri.runtime.updatePodSandboxResources({ podSandboxId: 'no-such-pod', resources: undefined }),
    ).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
  });

  it('filters ListPodSandbox by id prefix, state and labels', async () => {
    const ready = await run(podConfig({ labels: { tier: 'front', app: 'icetray-test' } }));
    const stopped = await run(podConfig({ labels: { tier: 'back' } }));
    await t.cri.runtime.stopPodSandbox({ podSandboxId: stopped });
    const byPrefix = await t.cri.runtime.listPodSandbox({ filter: { id: ready.slice(0, 12) } });
    expect(byPrefix.items.map((p) => p.id)).toEqual([ready]);
    const byLabel = await t.cri.runtime.listPodSandbox({ filter: { labelSelector: { tier: 'front' } } });
    expect(byLabel.items.map((p) => p.id)).toEqual([ready]);
    const notReady = await t.cri.runtime.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_NOTREADY } } });
    expect(notReady.items.map((p) => p.id)).toContain(stopped);
    expect(notReady.items.map((p) => p.id)).not.toContain(ready);

    // StreamPodSandboxes (the kubelet's CRIListStreaming) answers what ListPodSandbox does.
    const client = new RuntimeServiceClient(`unix://${t.socket}`, credentials.createInsecure());
    try {
      const streamed = async (request: StreamPodSandboxesRequest): Promise<string[]> => {
        const ids: string[] = [];
        for await (const message of client.streamPodSandboxes(request) as AsyncIterable<StreamPodSandboxesResponse>)
          ids.push(...message.podSandboxes.map((p) => p.id));
        return ids.sort();
      };
      const all = (await t.cri.runtime.listPodSandbox({})).items.map((p) => p.id).sort();
      expect(await streamed({ filter: undefined })).toEqual(all);
      expect(await streamed({ filter: PodSandboxFilter.fromPartial({ labelSelector: { tier: 'front' } }) })).toEqual([ready]);
    } finally {
      client.close();
    }
  });

  it('a restarted server still lists its pods, and a pause that died meanwhile shows NOTREADY', async () => {
    const alive = await run(podConfig());
    const dying = await run(podConfig());
    const { pid } = await info(dying);
    await t.server.stop();
    process.kill(pid, 'SIGKILL');
    await sleep(100);
    const runtime = await createRuntime(t.runtime.loaded, { procSys: t.runtime.procSys });
    const server = await startServer(runtime);
    const cri = connectCri(server.socket);
    try {
      const states = new Map((await cri.runtime.listPodSandbox({})).items.map((p) => [p.id, p.state]));
      expect(states.get(alive)).toBe(PodSandboxState.SANDBOX_READY);
      expect(states.get(dying)).toBe(PodSandboxState.SANDBOX_NOTREADY);
      // The dead pod can still be stopped and removed (CNI DEL through its pinned netns).
      await cri.runtime.removePodSandbox({ podSandboxId: dying });
      expect((await cri.runtime.listPodSandbox({ filter: { id: dying } })).items).toEqual([]);
    } finally {
      // Hand the restarted server back to the suite's clean-up.
      t.runtime = runtime;
      t.server = server;
      t.cri.close();
      t.cri = cri;
    }
  });
});

describe.skipIf(!isRoot)('a node without the CNI plugins its network needs (needs root: namespaces)', () => {
  it('gives pods a private netns with loopback only, and reports NetworkReady=false with the fix', async () => {
    const t = await startTestServer();
    try {
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const confDir = t.runtime.loaded.config.cniConfDir;
      mkdirSync(confDir, { recursive: true });
      writeFileSync(
        join(confDir, '10-missing.conflist'),
        JSON.stringify({ cniVersion: '1.0.0', name: 'missing', plugins: [{ type: 'no-such-plugin' }] }),
      );
      const { status } = await t.cri.runtime.status({});
      const network = status?.conditions.find((c) => c.type === 'NetworkReady');
      expect(network).toMatchObject({ status: false, reason: 'NetworkPluginNotReady' });
      expect(network?.message).toContain('no-such-plugin');
      expect(network?.message).toContain('apt-get install containernetworking-plugins');

      const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig() });
      const pod = await t.cri.runtime.podSandboxStatus({ podSandboxId, verbose: true });
      expect(pod.status?.network?.ip).toBe('');
      const netns = (JSON.parse(pod.info['info'] ?? '{}') as { netns: string }).netns;
      const links = await sh('nsenter', [`--net=${netns}`, 'ip', '-o', 'link']);
      expect(links.stdout.trim().split('\n')).toHaveLength(1);
      expect(links.stdout).toMatch(/1: lo: <LOOPBACK,UP,LOWER_UP>/);
      await t.cri.runtime.removePodSandbox({ podSandboxId });
    } finally {
      await t.close();
    }
  });
});
