import { status as grpcStatus } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { checkCni } from '../src/doctor/checks.js';
import { PodSandboxState } from '../src/generated/api.js';
import { RECURSIVE_READONLY_MOUNTS } from '../src/os/kernel.js';
import { createRuntime } from '../src/server/runtime.js';
import { startServer } from '../src/server/serve.js';
import { connectCri } from './helpers/cri.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { startTestServer, testConfig, type TestServer } from './helpers/server.js';
import { isRoot } from './helpers/tools.js';

/** What a failed call was answered with. */
async function failure(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await call;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('the call succeeded');
}

/** The pod folders an icetray keeps under its root and state dirs. */
function podFolders(t: TestServer): string[] {
  const { rootDir, stateDir } = t.runtime.loaded.config;
  const list = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);
  return [...list(join(rootDir, 'sandboxes')), ...list(join(stateDir, 'sandboxes'))].sort();
}

describe.skipIf(!isRoot)('runtime handlers over the socket (issue #16; needs root: pods)', () => {
  let t: TestServer;
  let net: TestNetwork;
  let ipForwardBefore: string;

  beforeAll(async () => {
    ipForwardBefore = ipForward();
    // One handler from the config file, one from the command line.
    t = await startTestServer({ toml: 'runtime_handlers = ["test-handler"]\n', config: { runtimeHandlers: ['other'] } });
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
  });
  afterAll(async () => {
    for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
      await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await t.close();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
  });

  it('lists every configured handler in Status, the default first, each with the features it really has', async () => {
    const { runtimeHandlers } = await t.cri.runtime.status({ verbose: false });
    const features = { recursiveReadOnlyMounts: RECURSIVE_READONLY_MOUNTS, userNamespaces: false };
    expect(runtimeHandlers).toEqual([
      { name: '', features },
      { name: 'test-handler', features },
      { name: 'other', features },
    ]);
  });

  it('runs a pod with each handler, and PodSandboxStatus and ListPodSandbox say which', async () => {
    for (const handler of ['', 'test-handler', 'other']) {
      const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: handler });
      const { status } = await t.cri.runtime.podSandboxStatus({ podSandboxId });
      expect(status?.state).toBe(PodSandboxState.SANDBOX_READY);
      expect(status?.runtimeHandler).toBe(handler);
      expect(status?.network?.ip).toMatch(/^10\.254\./);
      const listed = (await t.cri.runtime.listPodSandbox({ filter: { id: podSandboxId } })).items;
      expect(listed.map((pod) => pod.runtimeHandler)).toEqual([handler]);
    }
  });

  it('answers NOT_FOUND for a handler that is not configured, naming the configured ones, and leaves nothing', async () => {
    const before = { pods: (await t.cri.runtime.listPodSandbox({})).items.length, folders: podFolders(t) };
    const config = podConfig();
    const err = await failure(t.cri.runtime.runPodSandbox({ config, runtimeHandler: 'kata' }));
    expect(err.code).toBe(grpcStatus.NOT_FOUND);
    expect(err.details).toBe('no runtime handler "kata" is configured (configured: "", "test-handler", "other")');
    expect((await t.cri.runtime.listPodSandbox({})).items.length).toBe(before.pods);
    expect(podFolders(t)).toEqual(before.folders);
    // Not even the pod's name stays reserved: the same config runs with a configured handler.
    await expect(t.cri.runtime.runPodSandbox({ config, runtimeHandler: 'test-handler' })).resolves.toBeDefined();
  });

  it.each([
    ['a NUL byte', 'test\0handler'],
    ['a newline', 'test-handler\nforged log line'],
    ['a path', '../../etc'],
    ['capitals', 'Test-Handler'],
    ['a megabyte', 'a'.repeat(1 << 20)],
  ])('refuses a handler name with %s as INVALID_ARGUMENT, quoted and cut in the message', async (_what, handler) => {
    const before = podFolders(t);
    const err = await failure(t.cri.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: handler }));
    expect(err.code).toBe(grpcStatus.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^runtime handler ".*" is not a valid name/);
    // eslint-disable-next-line no-control-regex
    expect(err.details).not.toMatch(/[\u0000-\u001f]/);
    expect(err.details.length).toBeLessThan(300);
    expect(podFolders(t)).toEqual(before);
  });

  it('still loads, reports, stops and removes a pod whose handler a restart no longer configures', async () => {
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: 'other' });
    await t.server.stop();
    await t.runtime.close();
    t.cri.close();
    // The same instance, now without the file's test-handler and the flag's "other".
    await writeFile(join(t.dir, 'config.toml'), '');
    const restarted = loadConfig({ file: join(t.dir, 'config.toml'), flags: testConfig(t.dir) });
    expect(restarted.config.runtimeHandlers).toEqual(['']);
    t.runtime = await createRuntime(restarted, { procSys: t.runtime.procSys });
    t.server = await startServer(t.runtime);
    t.cri = connectCri(t.server.socket);

    const { status } = await t.cri.runtime.podSandboxStatus({ podSandboxId });
    expect(status?.state).toBe(PodSandboxState.SANDBOX_READY);
    expect(status?.runtimeHandler).toBe('other');
    expect((await t.cri.runtime.status({ verbose: false })).runtimeHandlers.map((h) => h.name)).toEqual(['']);
    const err = await failure(t.cri.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: 'other' }));
    expect(err.code).toBe(grpcStatus.NOT_FOUND);
    await t.cri.runtime.stopPodSandbox({ podSandboxId });
    await t.cri.runtime.removePodSandbox({ podSandboxId });
    expect((await t.cri.runtime.listPodSandbox({ filter: { id: podSandboxId } })).items).toEqual([]);
    expect(podFolders(t)).not.toContain(podSandboxId);
  });
});

describe.skipIf(!isRoot)('one default bridge per instance (issue #16; needs root: bridges, pods)', () => {
  // Two /24s of 10.253/16 of the test's own: never the host's networks, nor writeTestNetwork's 10.254/16.
  const n = ((randomBytes(1)[0] ?? 0) % 120) * 2;
  const subnets = [`10.253.${String(n)}.0/24`, `10.253.${String(n + 1)}.0/24`] as const;
  const servers: TestServer[] = [];
  const bridges = new Set<string>();
  let ipForwardBefore: string;

  async function start(podCidr: string): Promise<TestServer> {
    const t = await startTestServer({ config: { podCidr } });
    servers.push(t);
    bridges.add(t.runtime.loaded.config.cniBridge);
    return t;
  }

  beforeAll(() => {
    ipForwardBefore = ipForward();
  });
  afterAll(async () => {
    for (const t of servers) {
      for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
        await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
      await t.close();
    }
    for (const bridge of bridges) await sh('ip', ['link', 'del', bridge]);
    restoreIpForward(ipForwardBefore);
  });

  it('gives two servers with different roots different bridges, and both pods addresses on their own', async () => {
    const [a, b] = [await start(subnets[0]), await start(subnets[1])];
    const [bridgeA, bridgeB] = [a.runtime.loaded.config.cniBridge, b.runtime.loaded.config.cniBridge];
    expect(bridgeA).toMatch(/^icetray-[0-9a-f]{6}$/);
    expect(bridgeB).toMatch(/^icetray-[0-9a-f]{6}$/);
    expect(bridgeA).not.toBe(bridgeB);
    for (const [t, subnet, bridge] of [
      [a, subnets[0], bridgeA],
      [b, subnets[1], bridgeB],
    ] as const) {
      const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig() });
      const { status } = await t.cri.runtime.podSandboxStatus({ podSandboxId });
      expect(status?.network?.ip.startsWith(subnet.replace(/0\/24$/, ''))).toBe(true);
      // The conflist icetray wrote, and the kernel: the pod's veth is on this instance's bridge.
      const conflist = JSON.parse(await readFile(join(t.runtime.loaded.config.cniConfDir, '10-icetray.conflist'), 'utf8')) as {
        plugins: { bridge?: string }[];
      };
      expect(conflist.plugins[0]?.bridge).toBe(bridge);
      expect(readdirSync(`/sys/class/net/${bridge}/brif`)).toHaveLength(1);
    }
    // Each pod reaches its own gateway, the bridge's first address.
    for (const [t, subnet] of [
      [a, subnets[0]],
      [b, subnets[1]],
    ] as const) {
      const [pod] = (await t.cri.runtime.listPodSandbox({})).items;
      const info = JSON.parse(
        (await t.cri.runtime.podSandboxStatus({ podSandboxId: pod?.id ?? '', verbose: true })).info['info'] ?? '{}',
      ) as { netns: string };
      const gateway = subnet.replace(/0\/24$/, '1');
      const route = await sh('nsenter', [`--net=${info.netns}`, 'ip', 'route', 'get', gateway]);
      expect(route.stdout).toContain('dev eth0');
    }
  });

  it('refuses pods of a third instance whose default subnet is routed through another bridge, leaving nothing', async () => {
    const [a] = servers;
    const bridgeA = a?.runtime.loaded.config.cniBridge ?? '';
    const c = await start(subnets[0]);
    const bridgeC = c.runtime.loaded.config.cniBridge;
    const ready = (await c.cri.runtime.status({ verbose: false })).status?.conditions.find((x) => x.type === 'NetworkReady');
    expect(ready).toMatchObject({ status: false, reason: 'PodCidrInUse' });
    expect(ready?.message).toContain(
      `${subnets[0]} of the default CNI network (bridge ${bridgeC}) is already routed through ${bridgeA}`,
    );
    const err = await failure(c.cri.runtime.runPodSandbox({ config: podConfig() }));
    expect(err.code).toBe(grpcStatus.FAILED_PRECONDITION);
    expect(err.details).toContain(`already routed through ${bridgeA}`);
    expect(podFolders(c)).toEqual([]);
    expect(existsSync(`/sys/class/net/${bridgeC}`)).toBe(false);
    // icetray doctor says the same, with the fix.
    const doctor = await checkCni(c.runtime.loaded.config);
    expect(doctor).toMatchObject({ ok: false, fix: expect.stringContaining('pod_cidr') as string });
    expect(doctor.evidence).toContain(`(bridge ${bridgeC})`);
  });
});
