import { status } from '@grpc/grpc-js';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeepPartial } from '../../src/cli/cri-client.js';
import { ContainerConfig, ContainerState, type PodSandboxConfig } from '../../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../../src/images/store.js';
import { formatLeaks, inventory, leakScope, settle, type Inventory, type LeakScope } from '../helpers/leaks.js';
import { codeOf, startHarness, stopHarness, type Harness } from '../helpers/hostile.js';
import { podConfig } from '../helpers/pods.js';
import type { TestServer } from '../helpers/server.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Hostile container configs and exec calls over the real socket: refused with INVALID_ARGUMENT
 * (never INTERNAL), nothing written outside the pod's folders, nothing left behind. Paths
 * through image symlinks are test/hostile/mounts.test.ts; devices test/hostile/devices.test.ts.
 */

/** A folder the payloads aim at: nothing may appear in it. */
const TARGET = 'icetray-hostile-target';

const PAYLOADS: [string, DeepPartial<ContainerConfig>][] = [
  // log_path is relative to the pod's log_directory and must stay inside it.
  ['a log_path climbing out of log_directory', { logPath: `../../${TARGET}/x.log` }],
  ['an absolute log_path', { logPath: `/tmp/${TARGET}/x.log` }],
  ['a log_path with ".." in the middle', { logPath: `a/../../../${TARGET}/x.log` }],
  ['a log_path with a part longer than NAME_MAX', { logPath: `${'l'.repeat(256)}/x.log` }],
  ['a host_path with a part longer than NAME_MAX', { mounts: [{ hostPath: `/tmp/${'h'.repeat(300)}`, containerPath: '/data' }] }],
  // A relative host path would be taken relative to icetray's working directory.
  ['a relative host_path', { mounts: [{ hostPath: `${TARGET}/data`, containerPath: '/data' }] }],
  ['a host_path with ".."', { mounts: [{ hostPath: `/tmp/x/../${TARGET}`, containerPath: '/data' }] }],
  ['a container_path climbing out of the rootfs', { mounts: [{ hostPath: '/tmp', containerPath: `/../../../tmp/${TARGET}` }] }],
  ['a relative container_path', { mounts: [{ hostPath: '/tmp', containerPath: 'data' }] }],
  // What reaches exec(2) as C strings.
  ['a NUL in the command', { command: ['sh', '-c', 'true\0rm -rf /'] }],
  ['a NUL in an environment value', { envs: [{ key: 'A', value: Buffer.from('x\0y') }] }],
  ['an environment key with "="', { envs: [{ key: 'A=B', value: Buffer.from('x') }] }],
  ['an argument longer than the kernel takes (E2BIG)', { command: ['sh', '-c', 'x'.repeat(200 * 1024)] }],
  [
    'command and environment over 1 MiB together (E2BIG)',
    { command: ['true', ...Array<string>(40).fill('y'.repeat(30 * 1024))] },
  ],
  ['a relative working_dir', { workingDir: 'tmp' }],
  ['a container name with a newline', { metadata: { name: 'c\nx' } }],
  ['a device that is a plain file', { devices: [{ containerPath: '/dev/x', hostPath: '/etc/hostname', permissions: 'rw' }] }],
  ['device permissions beyond rwm', { devices: [{ containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rwx' }] }],
  ['an unknown capability', { linux: { securityContext: { capabilities: { addCapabilities: ['CAP_EVERYTHING'] } } } }],
];

describe.skipIf(!isRoot)('hostile container configs and execs (needs root: real containers over the socket)', () => {
  let h: Harness | undefined;
  let t: TestServer;
  let scope: LeakScope;
  let before: Inventory;
  let pod: PodSandboxConfig;
  let podSandboxId: string;
  let running: string;
  const ids = new Set<string>();
  const podUids = new Set<string>();
  let logDir: string;
  let target: string;

  let made = 0;
  const config = (change: DeepPartial<ContainerConfig>) =>
    ContainerConfig.fromPartial({
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sleep', '300'],
      logPath: 'c.log',
      ...change,
      metadata: { name: `c-${String(made++)}`, ...change.metadata },
    });

  beforeAll(async () => {
    h = await startHarness();
    t = h.t;
    // log_directory two levels down, so that "../../" from it lands in the test's own folder.
    logDir = join(t.dir, 'logs', 'pods', 'p');
    target = join(t.dir, 'logs', TARGET);
    mkdirSync(target, { recursive: true });
    pod = podConfig({ logDirectory: logDir });
    podUids.add(pod.metadata?.uid ?? '');
    ({ podSandboxId } = await t.cri.runtime.runPodSandbox({ config: pod }));
    ids.add(podSandboxId);
    const { containerId } = await t.cri.runtime.createContainer({ podSandboxId, config: config({}), sandboxConfig: pod });
    await t.cri.runtime.startContainer({ containerId });
    running = containerId;
    ids.add(containerId);
    scope = leakScope(t, h.net, { podUids, ids });
    before = await inventory(scope);
  });
  afterAll(() => stopHarness(h));

  it.each(PAYLOADS)('refuses %s with INVALID_ARGUMENT', async (_, change) => {
    const code = await codeOf(t.cri.runtime.createContainer({ podSandboxId, config: config(change), sandboxConfig: pod }));
    expect(code).toBe(status.INVALID_ARGUMENT);
  });

  it.each([
    ['a NUL in the command', ['sh', '-c', 'true\0x']],
    ['an argument over 128 KiB', ['sh', '-c', 'z'.repeat(200 * 1024)]],
  ])('refuses an ExecSync with %s as INVALID_ARGUMENT', async (_, cmd) => {
    expect(await codeOf(t.cri.runtime.execSync({ containerId: running, cmd, timeout: 5n }))).toBe(status.INVALID_ARGUMENT);
  });

  it('refuses a negative ExecSync timeout, and honours one past a timer’s range (it does not fire at once)', async () => {
    expect(await codeOf(t.cri.runtime.execSync({ containerId: running, cmd: ['true'], timeout: -1n }))).toBe(
      status.INVALID_ARGUMENT,
    );
    const result = await t.cri.runtime.execSync({
      containerId: running,
      cmd: ['sh', '-c', 'sleep 0.2; echo done'],
      timeout: 2n ** 62n,
    });
    expect(result.stdout.toString()).toBe('done\n');
  });

  it('cuts a huge id in the NOT_FOUND message', async () => {
    const err = await t.cri.runtime.containerStatus({ containerId: 'f'.repeat(1_000_000) }).catch((e: unknown) => e);
    expect((err as { code: number }).code).toBe(status.NOT_FOUND);
    expect((err as { details: string }).details.length).toBeLessThan(300);
  });

  it("closes its end of a container's stdin when the container ends (one descriptor leaked per container)", async () => {
    const { containerId } = await t.cri.runtime.createContainer({
      podSandboxId,
      config: config({ stdin: true, command: ['cat'] }),
      sandboxConfig: pod,
    });
    await t.cri.runtime.startContainer({ containerId });
    await t.cri.runtime.stopContainer({ containerId, timeout: 0n });
    await t.cri.runtime.removeContainer({ containerId });
    // The same on a terminal, whose input goes through a wrapper (a fuzz finding), ending by itself.
    const tty = await t.cri.runtime.createContainer({
      podSandboxId,
      config: config({ stdin: true, tty: true, command: ['sh', '-c', 'kill -9 $$'] }),
      sandboxConfig: pod,
    });
    await t.cri.runtime.startContainer({ containerId: tty.containerId });
    for (let i = 0; i < 100; i++) {
      const state = (await t.cri.runtime.containerStatus({ containerId: tty.containerId })).status?.state;
      if (state === ContainerState.CONTAINER_EXITED) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await t.cri.runtime.removeContainer({ containerId: tty.containerId });
  });

  it('wrote nothing outside the pod and left nothing behind', async () => {
    expect(readdirSync(target)).toEqual([]);
    expect(existsSync(join(process.cwd(), TARGET))).toBe(false);
    const leaks = await settle(scope, before);
    expect(leaks, formatLeaks(leaks)).toEqual([]);
  });

  it('keeps state private: root_dir, state_dir and container records are root’s alone, logs 0640', () => {
    const { rootDir, stateDir } = t.runtime.loaded.config;
    for (const dir of [rootDir, stateDir]) expect(statSync(dir).mode & 0o777).toBe(0o700);
    const record = join(rootDir, 'containers', running, 'container.json');
    expect(statSync(record).mode & 0o777).toBe(0o600);
    expect(statSync(join(rootDir, 'containers', running)).mode & 0o077).toBe(0);
    expect(statSync(join(logDir, 'c.log')).mode & 0o777).toBe(0o640);
  });
});
