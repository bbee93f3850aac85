import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explainPod, type PodRecord } from '../src/explain/pod.js';
import { PodSandboxState } from '../src/generated/api.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { isRoot } from './helpers/tools.js';

describe.skipIf(!isRoot)('icetray explain pod (needs root: real pods)', () => {
  let t: TestServer;
  let net: TestNetwork;
  let before: string;
  beforeAll(async () => {
    before = ipForward();
    t = await startTestServer();
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
  });
  afterAll(async () => {
    for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
      await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await t.close();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(before);
  });

  async function record(id: string): Promise<PodRecord> {
    const response = await t.cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    return {
      id,
      name: response.status?.metadata?.name ?? '',
      state: response.status?.state === PodSandboxState.SANDBOX_READY ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
      ip: response.status?.network?.ip ?? '',
      info: JSON.parse(response.info['info'] ?? '{}') as PodRecord['info'],
    };
  }

  it('lists the processes that really share each namespace, and finds the IP on eth0', async () => {
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig() });
    const pod = await record(podSandboxId);
    const joined = spawn('nsenter', [`--net=${pod.info.namespaces['net']?.path ?? ''}`, 'sleep', '60'], { stdio: 'ignore' });
    await sleep(200);
    const explained = await explainPod(pod);
    const net = explained.namespaces.find((ns) => ns.kind === 'net');
    expect(net?.members[0]?.pid).toBe(pod.info.pid);
    expect(net?.members.map((m) => m.command)).toContain('sleep 60');
    expect(explained.namespaces.find((ns) => ns.kind === 'ipc')?.members.map((m) => m.command)).not.toContain('sleep 60');
    expect(explained.network.liveAddresses[0]).toMatch(new RegExp(`^${pod.ip}/`));
    expect(explained.disagreements).toEqual([]);
    joined.kill('SIGKILL');
  });

  it('flags a pod recorded ready whose pause is gone', async () => {
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: podConfig() });
    const pod = await record(podSandboxId);
    process.kill(pod.info.pid ?? 0, 'SIGKILL');
    await sleep(100);
    const explained = await explainPod(pod);
    expect(explained.pause.alive).toBe(false);
    expect(explained.disagreements[0]).toContain('is not running');
  });

  it('shows different namespace inodes for different pods', async () => {
    const one = await record((await t.cri.runtime.runPodSandbox({ config: podConfig() })).podSandboxId);
    const two = await record((await t.cri.runtime.runPodSandbox({ config: podConfig() })).podSandboxId);
    const [a, b] = await Promise.all([explainPod(one), explainPod(two)]);
    for (const kind of ['net', 'ipc', 'uts', 'pid']) {
      expect(a.namespaces.find((ns) => ns.kind === kind)?.inode).not.toBe(b.namespaces.find((ns) => ns.kind === kind)?.inode);
    }
  });
});
