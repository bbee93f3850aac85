import { status as grpcStatus } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerConfig, ContainerState, MountPropagation, type Mount, type PodSandboxConfig } from '../src/generated/api.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { runIcetray, runProgram } from './helpers/cli.js';
import { ipForward, isAlive, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { useTempDirs } from './helpers/temp.js';
import { CRICTL, crictlFlags, crictlMissing, isRoot } from './helpers/tools.js';

const BUSYBOX = 'registry.k8s.io/e2e-test-images/busybox:1.29-2';
const FIXTURES = join(PACKAGE_ROOT, 'conformance', 'fixtures', 'registry.sh');
const tempDir = useTempDirs('icetray-containers-');

function fixtures(command: 'up' | 'down', cache: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [FIXTURES, command],
      { env: { ...process.env, ICETRAY_FIXTURES_CACHE: cache, ICETRAY_REGISTRY_PORT: '5077' } },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim())),
    );
  });
}

describe.skipIf(!isRoot)('containers on the real kernel (needs root: namespaces, mounts, cgroups)', () => {
  let t: TestServer;
  let net: TestNetwork;
  let before: string;
  let cache: string;

  beforeAll(async () => {
    before = ipForward();
    cache = await tempDir();
    const registry = await fixtures('up', cache);
    t = await startTestServer({ toml: `[registry.mirrors."registry.k8s.io"]\nendpoints = ["${registry}"]\n` });
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
    await t.cri.image.pullImage({ image: { image: BUSYBOX } });
  }, 120_000);
  afterAll(async () => {
    try {
      for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
        await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
      await t.close();
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(before);
    } finally {
      // Even when set-up failed half-way, the registry must not outlive the file.
      await fixtures('down', cache);
    }
  });

  async function pod(overrides: Partial<PodSandboxConfig> = {}): Promise<{ id: string; config: PodSandboxConfig }> {
    const config = podConfig({ logDirectory: join(t.dir, 'logs', String(Math.random())), ...overrides });
    return { id: (await t.cri.runtime.runPodSandbox({ config })).podSandboxId, config };
  }
  async function run(podId: string, podCfg: PodSandboxConfig, name: string, command: string[], attempt = 0): Promise<string> {
    const config = ContainerConfig.fromPartial({
      metadata: { name, attempt },
      image: { image: BUSYBOX },
      command,
      logPath: `${name}.log`,
    });
    const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: podCfg });
    await t.cri.runtime.startContainer({ containerId });
    return containerId;
  }
  async function exec(containerId: string, cmd: string[]): Promise<string> {
    const result = await t.cri.runtime.execSync({ containerId, cmd, timeout: 10n });
    expect(result.exitCode, result.stderr.toString()).toBe(0);
    return result.stdout.toString();
  }
  async function netInode(containerId: string): Promise<number> {
    const status = await t.cri.runtime.containerStatus({ containerId, verbose: true });
    return (JSON.parse(status.info['info'] ?? '{}') as { namespaces: { net: number } }).namespaces.net;
  }

  it('gives two containers of a pod one IP; a server on 127.0.0.1 in one is reached from the other', async () => {
    const p = await pod();
    const web = await run(p.id, p.config, 'web', [
      'sh',
      '-c',
      'mkdir -p /www && echo hello ice cube > /www/index.html && httpd -f -p 127.0.0.1:8080 -h /www',
    ]);
    const client = await run(p.id, p.config, 'client', ['sleep', '300']);
    const ip = (await t.cri.runtime.podSandboxStatus({ podSandboxId: p.id })).status?.network?.ip ?? '';
    for (const id of [web, client]) expect(await exec(id, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain(`inet ${ip}/`);
    let body = '';
    for (let i = 0; i < 30 && body === ''; i++) {
      body = (
        await t.cri.runtime.execSync({ containerId: client, cmd: ['wget', '-qO-', 'http://127.0.0.1:8080/'], timeout: 5n })
      ).stdout.toString();
      if (body === '') await sleep(100);
    }
    expect(body).toBe('hello ice cube\n');
    expect(await netInode(web)).toBe(await netInode(client));
  });

  it("with pid=POD each container sees the other's processes, and pause as PID 1", async () => {
    const p = await pod();
    const a = await run(p.id, p.config, 'a', ['sleep', '301']);
    await run(p.id, p.config, 'b', ['sleep', '302']);
    const ps = await exec(a, ['ps', '-o', 'pid,args']);
    expect(ps).toMatch(/^\s*1\s+.*pause/m);
    expect(ps).toContain('sleep 302');
  });

  it('a container killed with SIGKILL is EXITED 137; pause, IP and its sibling stay; a new attempt joins the same netns', async () => {
    const p = await pod();
    const victim = await run(p.id, p.config, 'victim', ['sleep', '303']);
    const sibling = await run(p.id, p.config, 'sibling', ['sleep', '304']);
    const before = await t.cri.runtime.podSandboxStatus({ podSandboxId: p.id, verbose: true });
    const pausePid = (JSON.parse(before.info['info'] ?? '{}') as { pid: number }).pid;
    const inode = await netInode(victim);
    const victimPid = (
      JSON.parse((await t.cri.runtime.containerStatus({ containerId: victim, verbose: true })).info['info'] ?? '{}') as {
        pid: number;
      }
    ).pid;
    process.kill(victimPid, 'SIGKILL');
    let status = await t.cri.runtime.containerStatus({ containerId: victim });
    for (let i = 0; i < 50 && status.status?.state !== ContainerState.CONTAINER_EXITED; i++) {
      await sleep(50);
      status = await t.cri.runtime.containerStatus({ containerId: victim });
    }
    expect(status.status).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 137 });
    expect(isAlive(pausePid)).toBe(true);
    expect((await t.cri.runtime.containerStatus({ containerId: sibling })).status?.state).toBe(ContainerState.CONTAINER_RUNNING);
    expect((await t.cri.runtime.podSandboxStatus({ podSandboxId: p.id })).status?.network?.ip).toBe(before.status?.network?.ip);
    const again = await run(p.id, p.config, 'victim', ['sleep', '305'], 1);
    expect(await netInode(again)).toBe(inode);
    // icetray explain container reads the same from /proc: shared namespaces, its own mnt, the restart.
    const explained = await runIcetray(['explain', 'container', again.slice(0, 12), '--socket', t.socket, '--output', 'json']);
    const e = JSON.parse(explained.stdout) as {
      pid: number;
      monitorPid: number;
      namespaces: { kind: string; shared: boolean }[];
      restarts: string[];
      cgroup: { path: string };
    };
    // The container's process is the child of its nsexec monitor.
    expect(readFileSync(`/proc/${e.pid}/status`, 'utf8')).toContain(`PPid:\t${e.monitorPid}\n`);
    expect(readFileSync(`/proc/${e.monitorPid}/cmdline`, 'utf8')).toContain('nsexec');
    expect(Object.fromEntries(e.namespaces.map((ns) => [ns.kind, ns.shared]))).toEqual({
      net: true,
      ipc: true,
      uts: true,
      pid: true,
      mnt: false,
    });
    expect(e.restarts).toEqual([expect.stringMatching(/^attempt 0 .*: CONTAINER_EXITED, exit code 137/) as string]);
    expect(e.cgroup.path).toContain(again);
  });

  it('writes the CRI log format and puts the process in the container cgroup', async () => {
    const p = await pod();
    const id = await run(p.id, p.config, 'logger', [
      'sh',
      '-c',
      // Images such as nginx log to /dev/stdout: that needs a pipe, not a socket, behind it.
      'echo to stdout; echo to stderr >&2; echo via /dev/stdout > /dev/stdout; echo via /dev/stderr > /dev/stderr; grep memory /proc/self/cgroup; sleep 300',
    ]);
    await sleep(300);
    const log = readFileSync(join(p.config.logDirectory, 'logger.log'), 'utf8');
    expect(log).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F to stdout$/m);
    expect(log).toMatch(/ stderr F to stderr$/m);
    expect(log).toMatch(/ stdout F via \/dev\/stdout$/m);
    expect(log).toMatch(/ stderr F via \/dev\/stderr$/m);
    expect(log).toContain(`memory:/kubepods/burstable/pod${p.config.metadata?.uid ?? ''}/${id}`);
  });

  it('ExecSync past its timeout is DEADLINE_EXCEEDED and leaves no process behind', async () => {
    const p = await pod();
    const id = await run(p.id, p.config, 'slow', ['sleep', '306']);
    await expect(
      t.cri.runtime.execSync({ containerId: id, cmd: ['sh', '-c', 'sleep 4321; true'], timeout: 1n }),
    ).rejects.toMatchObject({
      code: grpcStatus.DEADLINE_EXCEEDED,
    });
    expect(await exec(id, ['sh', '-c', 'ps -o args | grep -c "sleep 432[1]" || true'])).toBe('0\n');
  });

  it('masks and write-protects paths, and keeps NET_ADMIN out of the default capabilities', async () => {
    const p = await pod();
    const config = ContainerConfig.fromPartial({
      metadata: { name: 'confined' },
      image: { image: BUSYBOX },
      command: ['sleep', '308'],
      linux: { securityContext: { maskedPaths: ['/etc/passwd'], readonlyPaths: ['/tmp'] } },
    });
    const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config });
    await t.cri.runtime.startContainer({ containerId });
    expect(await exec(containerId, ['cat', '/etc/passwd'])).toBe('');
    const touch = await t.cri.runtime.execSync({ containerId, cmd: ['touch', '/tmp/x'], timeout: 5n });
    expect(touch.stderr.toString()).toBe('touch: /tmp/x: Read-only file system\n');
    const capEff = /CapEff:\s+([0-9a-f]+)/.exec(await exec(containerId, ['cat', '/proc/self/status']))?.[1] ?? '0';
    const NET_ADMIN = 12n;
    const NET_RAW = 13n;
    expect((BigInt(`0x${capEff}`) >> NET_ADMIN) & 1n).toBe(0n);
    expect((BigInt(`0x${capEff}`) >> NET_RAW) & 1n).toBe(1n);
  });

  it('puts limits in the cgroup files, reports rising CPU in stats, and updates a running container (crictl update)', async () => {
    const p = await pod();
    const config = ContainerConfig.fromPartial({
      metadata: { name: 'busy' },
      image: { image: BUSYBOX },
      command: ['sh', '-c', 'while :; do :; done'],
      linux: { resources: { cpuPeriod: 100_000n, cpuQuota: 50_000n, memoryLimitInBytes: 64n * 1024n * 1024n } },
    });
    const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config });
    await t.cri.runtime.startContainer({ containerId });
    const cgroup = `/kubepods/burstable/pod${p.config.metadata?.uid ?? ''}/${containerId}`;
    expect(readFileSync(`/sys/fs/cgroup/memory${cgroup}/memory.limit_in_bytes`, 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(`/sys/fs/cgroup/cpu${cgroup}/cpu.cfs_quota_us`, 'utf8').trim()).toBe('50000');
    const first = (await t.cri.runtime.containerStats({ containerId })).stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
    await sleep(500);
    const second = (await t.cri.runtime.containerStats({ containerId })).stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
    expect(second).toBeGreaterThan(first + 50_000_000n);
    const pods = await t.cri.runtime.listPodSandboxStats({ filter: { id: p.id } });
    expect(pods.stats[0]?.linux?.containers.map((c) => c.attributes?.id)).toEqual([containerId]);
    const crictl = crictlMissing();
    if (crictl === undefined) {
      const stats = await runProgram(CRICTL, [...crictlFlags(t.socket), 'stats', '--id', containerId, '-o', 'json']);
      const listed = JSON.parse(stats.stdout) as { stats: { cpu: { usageCoreNanoSeconds: { value: string } } }[] };
      expect(BigInt(listed.stats[0]?.cpu.usageCoreNanoSeconds.value ?? '0')).toBeGreaterThanOrEqual(second);
      const update = await runProgram(CRICTL, [
        ...crictlFlags(t.socket),
        'update',
        '--memory',
        String(128 * 1024 * 1024),
        containerId,
      ]);
      expect(update.code, update.stderr).toBe(0);
    } else {
      await t.cri.runtime.updateContainerResources({ containerId, linux: { memoryLimitInBytes: 128n * 1024n * 1024n } });
    }
    expect(readFileSync(`/sys/fs/cgroup/memory${cgroup}/memory.limit_in_bytes`, 'utf8').trim()).toBe(String(128 * 1024 * 1024));
  });

  it('propagates mounts as asked: rslave host to container, rshared both ways, rprivate not at all', async () => {
    // A host folder of the test's own, made a shared mount (as critest and kubelet volumes do).
    const host = await tempDir();
    await sh('mount', ['--bind', host, host]);
    await sh('mount', ['--make-rshared', host]);
    try {
      const p = await pod();
      const volume = (name: string, propagation: MountPropagation) => ({
        metadata: { name },
        image: { image: BUSYBOX },
        command: ['sleep', '311'],
        mounts: [{ hostPath: join(host, name), containerPath: '/vol', propagation }],
        linux: { securityContext: { privileged: true } }, // to mount inside
      });
      const ids: Record<string, string> = {};
      for (const [name, propagation] of [
        ['slave', MountPropagation.PROPAGATION_HOST_TO_CONTAINER],
        ['shared', MountPropagation.PROPAGATION_BIDIRECTIONAL],
        ['private', MountPropagation.PROPAGATION_PRIVATE],
      ] as const) {
        await mkdir(join(host, name, 'from-host'), { recursive: true });
        await mkdir(join(host, name, 'from-container'), { recursive: true });
        const config = ContainerConfig.fromPartial(volume(name, propagation));
        const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config });
        await t.cri.runtime.startContainer({ containerId });
        ids[name] = containerId;
      }
      // A mount made on the host after the start, and one made in each container.
      for (const name of Object.keys(ids)) {
        await sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', `host-${name}`, join(host, name, 'from-host')]);
        await exec(ids[name] ?? '', ['sh', '-c', 'mount -t tmpfs -o size=1m from-the-container /vol/from-container']);
      }
      const seenInside = async (name: string): Promise<boolean> =>
        (await exec(ids[name] ?? '', ['cat', '/proc/self/mountinfo'])).includes(` /vol/from-host `);
      const seenOnHost = (name: string): boolean =>
        readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${join(host, name, 'from-container')} `);
      expect([await seenInside('slave'), seenOnHost('slave')]).toEqual([true, false]);
      expect([await seenInside('shared'), seenOnHost('shared')]).toEqual([true, true]);
      expect([await seenInside('private'), seenOnHost('private')]).toEqual([false, false]);
      // What nsexec mounts into the rootfs stays in the container, bidirectional or not.
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/\/rootfs\/(proc|sys|dev|vol)[ /]/);

      // Bidirectional from a mount that is not shared cannot work: refused, nothing left running.
      const unshared = await tempDir();
      const config = ContainerConfig.fromPartial(volume('refused', MountPropagation.PROPAGATION_BIDIRECTIONAL));
      config.mounts[0] = { ...config.mounts[0], hostPath: unshared } as (typeof config.mounts)[0];
      const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config });
      await expect(t.cri.runtime.startContainer({ containerId })).rejects.toMatchObject({
        code: grpcStatus.FAILED_PRECONDITION,
        details: expect.stringContaining('not a shared mount') as string,
      });
      const status = await t.cri.runtime.containerStatus({ containerId });
      expect(status.status?.state).toBe(ContainerState.CONTAINER_CREATED);
      await t.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    } finally {
      await sh('umount', ['-R', host]);
    }
  });

  it('read-only mounts: plain ro leaves mounts below writable, recursive_read_only does not; mount options apply', async () => {
    // A host folder with a tmpfs mounted below it, as critest's recursive read-only specs make.
    const host = await tempDir();
    await mkdir(join(host, 'tmpfs'));
    await sh('mount', ['-t', 'tmpfs', '-o', 'size=1m,nodev,noexec', 'rro-test', join(host, 'tmpfs')]);
    try {
      const p = await pod();
      const start = async (name: string, mount: Partial<Mount>): Promise<string> => {
        const config = ContainerConfig.fromPartial({
          metadata: { name },
          image: { image: BUSYBOX },
          command: ['sleep', '312'],
          mounts: [{ hostPath: host, containerPath: '/mnt', ...mount }],
        });
        const { containerId } = await t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config });
        await t.cri.runtime.startContainer({ containerId });
        return containerId;
      };
      const tryTouch = async (id: string, path: string) =>
        (await t.cri.runtime.execSync({ containerId: id, cmd: ['touch', path], timeout: 5n })).stderr.toString();
      const plain = await start('ro', { readonly: true });
      expect(await tryTouch(plain, '/mnt/top')).toContain('Read-only file system');
      expect(await tryTouch(plain, '/mnt/tmpfs/below')).toBe('');
      const recursive = await start('rro', { readonly: true, recursiveReadOnly: true });
      expect(await tryTouch(recursive, '/mnt/tmpfs/below-rro')).toContain('Read-only file system');
      const optionsOf = async (id: string): Promise<string[]> =>
        ((await exec(id, ['sh', '-c', 'grep " /mnt " /proc/self/mountinfo'])).split(' ')[5] ?? '').split(',');
      const noexec = await start('noexec', { mountOptions: ['noexec', 'nosuid', 'nodev'] });
      expect(await optionsOf(noexec)).toEqual(expect.arrayContaining(['rw', 'nosuid', 'nodev', 'noexec']));
      // Remounting read-only keeps what the host's mount has: a nodev, noexec tmpfs stays so.
      const kept = await start('kept', { hostPath: join(host, 'tmpfs'), readonly: true, mountOptions: ['nosuid'] });
      expect(await optionsOf(kept)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev', 'noexec']));

      // What CRI forbids, or icetray cannot do, is refused at CreateContainer.
      const refused: [string, Partial<Mount>, string][] = [
        ['rro-rw', { readonly: false, recursiveReadOnly: true }, 'needs readonly'],
        [
          'rro-slave',
          { readonly: true, recursiveReadOnly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER },
          'private propagation',
        ],
        ['bad-option', { mountOptions: ['sync'] }, 'mount option "sync" is not supported'],
      ];
      for (const [name, mount, why] of refused) {
        const config = ContainerConfig.fromPartial({
          metadata: { name },
          image: { image: BUSYBOX },
          mounts: [{ hostPath: host, containerPath: '/mnt', ...mount }],
        });
        await expect(
          t.cri.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config }),
        ).rejects.toMatchObject({
          code: grpcStatus.INVALID_ARGUMENT,
          details: expect.stringContaining(why) as string,
        });
      }
      await t.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    } finally {
      await sh('umount', [join(host, 'tmpfs')]);
    }
  });

  it('removing the pod removes its containers, their cgroups and rootfs mounts', async () => {
    const p = await pod();
    const id = await run(p.id, p.config, 'gone', ['sleep', '307']);
    await t.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
    expect((await t.cri.runtime.containerStatus({ containerId: id })).status?.state).toBe(ContainerState.CONTAINER_EXITED);
    await t.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    await expect(t.cri.runtime.containerStatus({ containerId: id })).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(id);
    expect((await sh('ls', [`/sys/fs/cgroup/memory/kubepods/burstable/pod${p.config.metadata?.uid ?? ''}`])).code).not.toBe(0);
  });
});
