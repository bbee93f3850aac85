import { mkdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerConfig } from '../../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../../src/images/store.js';
import { diff, formatLeaks, inventory, leakScope, settle, type Inventory, type LeakScope } from './leaks.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './pods.js';
import { startTestServer, type TestServer } from './server.js';
import { isRoot } from './tools.js';

const empty = (): Inventory => ({
  pods: [],
  containers: [],
  processes: [],
  mounts: [],
  cgroups: [],
  veths: [],
  leases: [],
  folders: [],
  natRules: [],
  fds: [],
});

describe('diff of two inventories', () => {
  it('names each thing present after that was not before, and nothing that went away', () => {
    const before = { ...empty(), pods: ['a', 'b'], mounts: ['/r/x (tmpfs)'] };
    const after = { ...empty(), pods: ['b', 'c'], mounts: ['/r/x (tmpfs)', '/r/x (tmpfs)'] };
    expect(diff(before, after)).toEqual([
      { kind: 'pods', item: 'c' },
      // A second mount stacked on the same point is one more mount.
      { kind: 'mounts', item: '/r/x (tmpfs)' },
    ]);
  });

  it('counts sockets and pipes by kind, so a reconnection is no leak but one more open file is', () => {
    const before = { ...empty(), fds: [{ fd: 3, target: 'socket:[100]' }] };
    const after = {
      ...empty(),
      fds: [
        { fd: 3, target: 'socket:[200]' },
        { fd: 9, target: '/var/log/x.log' },
      ],
    };
    expect(diff(before, after)).toEqual([{ kind: 'fds', item: 'fd 9 -> /var/log/x.log' }]);
  });

  it('tells a process from a later one that reused its pid', () => {
    const p = { pid: 7, startTime: '1', cmdline: 'pause -d', why: 'cgroup' };
    const leaks = diff({ ...empty(), processes: [p] }, { ...empty(), processes: [{ ...p, startTime: '2' }] });
    expect(leaks).toEqual([{ kind: 'processes', item: 'pid 7: pause -d', detail: 'cgroup' }]);
  });
});

describe.skipIf(!isRoot)('the inventory of a real icetray (needs root: pods, cgroups, bridges)', () => {
  let t: TestServer;
  let net: TestNetwork;
  let ipForwardBefore: string;
  let scope: LeakScope;
  const podUids = new Set<string>();
  const ids = new Set<string>();

  beforeAll(async () => {
    ipForwardBefore = ipForward();
    t = await startTestServer();
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
    await t.cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
    scope = leakScope(t, net, { podUids, ids });
  }, 60_000);
  afterAll(async () => {
    for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
      await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await t.close();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
  });

  it('counts a running pod and container in every kind, and nothing once they are removed', async () => {
    const before = await inventory(scope);
    const config = podConfig({ logDirectory: join(t.dir, 'logs') });
    podUids.add(config.metadata?.uid ?? '');
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config });
    ids.add(podSandboxId);
    const { containerId } = await t.cri.runtime.createContainer({
      podSandboxId,
      config: ContainerConfig.fromPartial({
        metadata: { name: 'sleeper' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '600'],
        logPath: 'sleeper.log',
      }),
      sandboxConfig: config,
    });
    ids.add(containerId);
    await t.cri.runtime.startContainer({ containerId });

    const leaks = diff(before, await inventory(scope));
    const kinds = new Set(leaks.map((l) => l.kind));
    expect([...kinds].sort(), formatLeaks(leaks)).toEqual(
      ['cgroups', 'containers', 'fds', 'folders', 'leases', 'mounts', 'pods', 'processes', 'veths'].sort(),
    );
    const why = leaks.filter((l) => l.kind === 'processes').map((l) => `${l.item} [${l.detail ?? ''}]`);
    // pause (by its label, the primary key), the nsexec monitor, and the container's own sleep.
    expect(why.join('\n')).toMatch(/pause -d.*\[tag: pause names /);
    expect(why.join('\n')).toMatch(/\[monitor: --exit-file /);
    expect(why.join('\n')).toMatch(/sleep 600 \[cgroup:/);
    expect(leaks).toContainEqual({ kind: 'pods', item: podSandboxId });
    const cgroup = leaks.find(
      (l) => l.kind === 'cgroups' && l.item === `/kubepods/burstable/pod${config.metadata?.uid ?? ''}/${containerId}`,
    );
    expect(cgroup?.detail).toMatch(/\bmemory\b/);

    await t.cri.runtime.removePodSandbox({ podSandboxId });
    const left = await settle(scope, before);
    expect(left, formatLeaks(left)).toEqual([]);
  });

  it("names a folder and a cgroup left behind, and does not count another instance's", async () => {
    const before = await inventory(scope);
    const folder = join(scope.rootDir, 'sandboxes', 'left-behind');
    const prefix = `/icetray-leaks-test-${process.pid}`;
    const mine = join('/sys/fs/cgroup/memory', prefix);
    const theirs = '/sys/fs/cgroup/memory/kubepods/burstable/podsomeone-elses-uid';
    await mkdir(folder, { recursive: true });
    await mkdir(mine, { recursive: true });
    const theirsExisted = await mkdir(theirs, { recursive: true }).then((made) => made === undefined);
    try {
      const leaks = diff(before, await inventory({ ...scope, cgroupPrefixes: [prefix] }));
      expect(leaks, formatLeaks(leaks)).toEqual([
        { kind: 'folders', item: folder },
        { kind: 'cgroups', item: prefix, detail: 'in memory' },
      ]);
    } finally {
      await rm(folder, { recursive: true, force: true });
      await rmdir(mine);
      if (!theirsExisted) await rmdir(theirs).catch(() => undefined);
    }
  });

  it('refuses "/" as a cgroup prefix, which would claim every cgroup of the node', async () => {
    await expect(inventory({ ...scope, cgroupPrefixes: ['/'] })).rejects.toThrow(/every cgroup/);
  });
});
