import { status as grpcStatus } from '@grpc/grpc-js';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerDevices } from '../../src/containers/devices.js';
import { nsexecLauncher } from '../../src/containers/nsexec-launcher.js';
import type { LaunchRequest, RunningProcess } from '../../src/containers/ports.js';
import { capabilityMask } from '../../src/containers/security-context.js';
import { ContainerConfig, ContainerState, type DeepPartial } from '../../src/generated/api.js';
import { processStartTime } from '../../src/os/proc-stat.js';
import { NSEXEC_BINARY } from '../../src/paths.js';
import {
  containerPid,
  createContainer,
  exec,
  runContainer,
  runPod,
  startHarness,
  statusField,
  stopHarness,
  type Harness,
  type Pod,
} from '../helpers/hostile.js';
import { useTempDirs } from '../helpers/temp.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Issue #11, the process part: capabilities, oom_score_adj, long lists (groups, masked paths),
 * device nodes, and failed launches that must leave nothing open. Over the real socket where
 * the CRI reaches it; the launcher called directly where a field is not wired to the CRI yet
 * (LaunchRequest.devices, RunningProcess.oomScoreAdj).
 */

const tempDir = useTempDirs('icetray-hostile-process-');

/** The gRPC status code of a failed call (or undefined when it succeeded). */
async function codeOf(call: Promise<unknown>): Promise<{ code: number | undefined; message: string }> {
  return call.then(
    () => ({ code: undefined, message: '' }),
    (err: unknown) => ({ code: (err as { code?: number }).code, message: (err as Error).message }),
  );
}

/** The capability sets of a process, as numbers. */
function capsOf(status: string): Record<'CapInh' | 'CapPrm' | 'CapEff' | 'CapBnd' | 'CapAmb', bigint> {
  const field = (name: string): bigint => BigInt(`0x${/^\w+:\s*(\w+)$/m.exec(status.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '')?.[1] ?? '0'}`);
  return { CapInh: field('CapInh'), CapPrm: field('CapPrm'), CapEff: field('CapEff'), CapBnd: field('CapBnd'), CapAmb: field('CapAmb') };
} // prettier-ignore

describe.skipIf(!isRoot)('processes over the socket (needs root: real containers)', () => {
  let h: Harness | undefined;
  let pod: Pod;
  const harness = (): Harness => {
    if (h === undefined) throw new Error('no harness');
    return h;
  };
  /** What icetray itself holds: a container cannot get more (this VM's root lacks CAP_SYS_RESOURCE). */
  const reachable = BigInt(`0x${statusField('self', 'CapPrm')}`);

  beforeAll(async () => {
    h = await startHarness();
    pod = await runPod(h);
  }, 60_000);
  afterAll(async () => {
    await stopHarness(h);
  });

  describe('capabilities: none inheritable, none ambient (CVE-2022-24769), the rest as asked', () => {
    it.each([
      ['a default container', {}],
      ['a privileged container', { privileged: true }],
      ['a container with NET_ADMIN added and CHOWN dropped', { capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['CHOWN'] } }],
    ])('%s and its exec', async (_what, securityContext) => {
      const id = await runContainer(harness(), pod, { linux: { securityContext } });
      const mask = capabilityMask(ContainerConfig.fromPartial({ linux: { securityContext } }).linux?.securityContext) & reachable;
      const main = capsOf(readFileSync(`/proc/${String(containerPid(harness(), id))}/status`, 'utf8'));
      const inExec = capsOf((await exec(harness(), id, ['cat', '/proc/self/status'])).stdout);
      for (const caps of [main, inExec]) {
        expect(caps.CapInh).toBe(0n);
        expect(caps.CapAmb).toBe(0n);
        expect(caps.CapBnd).toBe(mask);
        expect(caps.CapPrm).toBe(mask);
        expect(caps.CapEff).toBe(mask);
      }
    }); // prettier-ignore

    it('a non-root user keeps the bounding set and nothing else over exec', async () => {
      const id = await runContainer(harness(), pod, { linux: { securityContext: { runAsUser: { value: 1000n } } } });
      const caps = capsOf(readFileSync(`/proc/${String(containerPid(harness(), id))}/status`, 'utf8'));
      expect(caps).toEqual({ CapInh: 0n, CapPrm: 0n, CapEff: 0n, CapAmb: 0n, CapBnd: capabilityMask(undefined) & reachable });
    });
  });

  it('sets all 300 supplementary groups, and refuses more than NGROUPS_MAX with a clear error', async () => {
    const groups = Array.from({ length: 300 }, (_, i) => BigInt(5000 + i));
    const id = await runContainer(harness(), pod, { linux: { securityContext: { supplementalGroups: groups } } });
    const inProcess = statusField(containerPid(harness(), id), 'Groups').split(/\s+/).map(BigInt);
    for (const gid of groups) expect(inProcess).toContain(gid);
    const inExec = /^Groups:\s*(.*)$/m.exec((await exec(harness(), id, ['cat', '/proc/self/status'])).stdout)?.[1] ?? '';
    expect(inExec.split(/\s+/)).toContain('5299');

    const ngroupsMax = Number(readFileSync('/proc/sys/kernel/ngroups_max', 'utf8'));
    const tooMany = Array.from({ length: ngroupsMax + 1 }, (_, i) => BigInt(i + 1));
    const made = await createContainer(harness(), pod, { linux: { securityContext: { supplementalGroups: tooMany } } }).catch(
      (err: unknown) => err as Error,
    );
    const refused = made instanceof Error ? made : await codeOf(harness().t.cri.runtime.startContainer({ containerId: made.id }));
    expect((refused as { code?: number }).code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(refused.message).toMatch(/groups/);
  }, 60_000);

  it('masks all 300 masked paths, the last one included', async () => {
    const masked = Array.from({ length: 300 }, (_, i) => `/m/${String(i)}`);
    const c = await createContainer(harness(), pod, { linux: { securityContext: { maskedPaths: masked } } });
    await mkdir(join(c.rootfs, 'm'));
    for (const path of masked) await writeFile(join(c.rootfs, path), 'secret\n');
    await harness().t.cri.runtime.startContainer({ containerId: c.id });
    for (const path of ['/m/0', '/m/150', '/m/299']) expect((await exec(harness(), c.id, ['cat', path])).stdout, path).toBe('');
    const mounts = (await exec(harness(), c.id, ['cat', '/proc/self/mountinfo'])).stdout;
    expect(masked.filter((path) => !mounts.includes(` ${path} `))).toEqual([]);
  });

  it('starts a container asking oom_score_adj -997 although root here cannot lower it (no CAP_SYS_RESOURCE)', async () => {
    const id = await runContainer(harness(), pod, { linux: { resources: { oomScoreAdj: -997n } } });
    const status = await harness().t.cri.runtime.containerStatus({ containerId: id });
    expect(status.status?.state).toBe(ContainerState.CONTAINER_RUNNING);
  });

  it('turns a NUL byte and an oversized command into INVALID_ARGUMENT, not INTERNAL', async () => {
    const id = await runContainer(harness(), pod, {});
    const nul = await codeOf(harness().t.cri.runtime.execSync({ containerId: id, cmd: ['echo', 'a\0b'], timeout: 5n }));
    expect(nul.code).toBe(grpcStatus.INVALID_ARGUMENT);
    // Each argument within the kernel's 128 KiB, all of them together past ARG_MAX: exec's E2BIG.
    const cmd = ['echo', ...Array<string>(20).fill('x'.repeat(120_000))];
    const big = await codeOf(harness().t.cri.runtime.execSync({ containerId: id, cmd, timeout: 5n }));
    expect(big.code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(big.message).toMatch(/E2BIG|too large/);
  });

  it('leaves the server with the descriptors and children it had after 3,000 failing launches', async () => {
    // A working dir the container's own process leaves behind: every exec then fails in nsexec (cwd).
    const c = await createContainer(harness(), pod, { workingDir: '/tmp/w' });
    await mkdir(join(c.rootfs, 'tmp', 'w'));
    await harness().t.cri.runtime.startContainer({ containerId: c.id });
    expect((await exec(harness(), c.id, ['rmdir', '/tmp/w'])).exitCode).toBe(0);
    const container = harness().t.runtime.containers.store.get(c.id);
    const containerPidNow = containerPid(harness(), c.id);
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const children = (): number =>
      readdirSync('/proc').filter((pid) => /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1] === String(process.pid)).length; // prettier-ignore

    // Over the socket: nsexec starts and reports a failure (its cwd is gone, the program is missing).
    const overSocket = async (cmd: string[]): Promise<void> => {
      const { code } = await codeOf(harness().t.cri.runtime.execSync({ containerId: c.id, cmd, timeout: 5n }));
      expect(code).not.toBe(grpcStatus.INTERNAL);
      expect(code).not.toBe(undefined);
    };
    // Straight to the launcher, what the CRI's own checks stop earlier: a spawn that fails
    // (E2BIG; no nsexec at all) and a cgroup placement that fails after nsexec started.
    const launchExec = (launcher: ReturnType<typeof nsexecLauncher>, argv: string[], placeInCgroup: () => Promise<void>) =>
      launcher.exec({ containerPid: containerPidNow, config: container.config, user: container.user, stateDir: container.dir, argv, env: [], cwd: '/', tty: false, placeInCgroup }); // prettier-ignore
    const real = nsexecLauncher(NSEXEC_BINARY);
    const missing = nsexecLauncher('/nonexistent/nsexec');
    const huge = ['echo', ...Array<string>(20).fill('x'.repeat(120_000))];
    const direct: (() => Promise<unknown>)[] = [
      () => expect(launchExec(real, huge, () => Promise.resolve())).rejects.toThrow(/E2BIG/),
      () => expect(launchExec(missing, ['true'], () => Promise.resolve())).rejects.toBeInstanceOf(Error),
      () => expect(launchExec(real, ['true'], () => Promise.reject(new Error('no cgroup')))).rejects.toThrow('no cgroup'),
      () => expect(launchExec(real, ['a\0b'], () => Promise.resolve())).rejects.toThrow(/NUL/),
    ];
    const kinds: (() => Promise<unknown>)[] = [() => overSocket(['true']), () => overSocket(['/no/such/program']), ...direct];

    // Warm up: the first launches open what the server keeps (libuv's signal pipe and the like).
    for (const kind of kinds) await kind();
    const before = { fds: fds(), children: children() };
    for (let i = 0; i < 3000; i += 10)
      await Promise.all(Array.from({ length: 10 }, (_, j) => (kinds[(i + j) % kinds.length] ?? (() => Promise.resolve()))()));
    expect(fds()).toBeLessThanOrEqual(before.fds + 3);
    expect(children()).toBeLessThanOrEqual(before.children);
    // No FIFO of the failed launches is left in the container's folder.
    expect((await readdir(container.dir)).filter((name) => name.startsWith('.pipe-'))).toEqual([]);
  }, 300_000);

  describe('the launcher itself: device nodes and the oom_score_adj in effect', () => {
    const launcher = nsexecLauncher(NSEXEC_BINARY);
    const started: RunningProcess[] = [];
    afterAll(async () => {
      for (const running of started) {
        process.kill(running.pid, 'SIGKILL');
        await running.exited;
      }
    });

    /** A request for a busybox rootfs made over the CRI, outside any pod (host namespaces, a PID namespace of its own). */
    async function request(config: DeepPartial<ContainerConfig>, devices: LaunchRequest['devices'] = []): Promise<LaunchRequest & { dir: string }> {
      const c = await createContainer(harness(), pod, {});
      const dir = await tempDir();
      const podFiles = { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
      for (const file of Object.values(podFiles)) await writeFile(file, 'pod file\n');
      return {
        containerId: c.id, config: ContainerConfig.fromPartial(config), podNamespaces: {}, podFiles, podShm: undefined,
        targetPid: undefined, hostname: 'direct', rootfs: c.rootfs, argv: ['sleep', '600'], env: ['PATH=/bin'], cwd: '/',
        user: { uid: 0, gid: 0, groups: [] }, stateDir: dir, devices, placeInCgroup: () => Promise.resolve(), dir,
      };
    } // prettier-ignore
    async function run(process: RunningProcess, argv: string[], config: LaunchRequest['config']): Promise<string> {
      const running = await launcher.exec({ containerPid: process.namespacePid, config, user: { uid: 0, gid: 0, groups: [] }, stateDir: await tempDir(), argv, env: ['PATH=/bin'], cwd: '/', tty: false, placeInCgroup: () => Promise.resolve() }); // prettier-ignore
      let out = '';
      running.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      running.stdin?.end();
      await running.exited;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return out;
    }

    it('makes each --device node at its path with its mode and owner, folders included, inside the rootfs', async () => {
      const host = await tempDir();
      const req = await request({}, [
        { path: '/dev/fuse-ish', type: 'c', major: 1, minor: 3, fileMode: 0o620, uid: 7, gid: 8, access: 'rwm' },
        { path: '/dev/dri/by-path/card9', type: 'c', major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0, access: 'rw' },
        { path: '/dev/loop-ish', type: 'b', major: 7, minor: 200, fileMode: 0o660, uid: 0, gid: 6, access: 'r' },
        { path: '/mydev/null3', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0, access: 'rw' },
      ]);
      await symlink(host, join(req.rootfs, 'mydev'));
      const running = await launcher.start(req);
      started.push(running);
      const listing = await run(running, ['sh', '-c', 'stat -c "%n %F %t:%T %a %u:%g" /dev/fuse-ish /dev/dri/by-path/card9 /dev/loop-ish /mydev/null3'], req.config); // prettier-ignore
      expect(listing.trim().split('\n')).toEqual([
        '/dev/fuse-ish character special file 1:3 620 7:8',
        '/dev/dri/by-path/card9 character special file 1:5 666 0:0',
        '/dev/loop-ish block special file 7:c8 660 0:6',
        '/mydev/null3 character special file 1:3 666 0:0',
      ]);
      expect(await readdir(host)).toEqual([]);
    });

    it('gives a privileged container every host device (containerDevices), its own /dev/ptmx kept', async () => {
      const config = { linux: { securityContext: { privileged: true } } };
      const devices = await containerDevices(ContainerConfig.fromPartial(config));
      const req = await request(config, devices);
      const running = await launcher.start(req);
      started.push(running);
      const listing = (await run(running, ['sh', '-c', 'cd /dev && find . \\( -type c -o -type b \\) | sort; readlink /dev/ptmx'], req.config)).split('\n'); // prettier-ignore
      for (const device of devices.filter((d) => d.path !== '/dev/ptmx'))
        expect(listing, device.path).toContain(`.${device.path.slice(4)}`);
      expect(listing).toContain('pts/ptmx');
    });

    it('reports the oom_score_adj really in effect from start, exec and reattach', async () => {
      const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8'));
      for (const asked of [-997n, 500n]) {
        const req = await request({ linux: { resources: { oomScoreAdj: asked } } });
        const running = await launcher.start(req);
        started.push(running);
        const inEffect = Number(readFileSync(`/proc/${String(running.namespacePid)}/oom_score_adj`, 'utf8'));
        expect(running.oomScoreAdj).toBe(inEffect);
        // Raising is always allowed; lowering below icetray's own needs CAP_SYS_RESOURCE.
        expect(inEffect).toBe(asked > 0n || reachable & (1n << 24n) ? Number(asked) : own);
        const again = launcher.reattach(
          { pid: running.pid, namespacePid: running.namespacePid, startTime: processStartTime(running.pid) ?? '' },
          req.dir,
        );
        expect(again).toBeDefined();
        expect(again?.oomScoreAdj).toBe(inEffect);
        const execed = await launcher.exec({ containerPid: running.namespacePid, config: req.config, user: req.user, stateDir: await tempDir(), argv: ['true'], env: [], cwd: '/', tty: false, placeInCgroup: () => Promise.resolve() }); // prettier-ignore
        expect(execed.oomScoreAdj).toBe(inEffect);
        await execed.exited;
      }
    });
  });
});
