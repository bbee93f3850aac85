import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCri } from './helpers/cri.js';
import { runIcetray, runProgram, startServeProcess, type ServeProcess } from './helpers/cli.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { CRICTL, crictlFlags, crictlMissing, isRoot } from './helpers/tools.js';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';

const skip = !isRoot ? 'needs root: creates pods' : crictlMissing();

describe.skipIf(skip !== undefined)(`crictl drives pod sandboxes (${skip ?? 'root, crictl built'})`, () => {
  let serve: ServeProcess;
  let net: TestNetwork;
  let ipForwardBefore: string;
  const crictl = (...args: string[]) => runProgram(CRICTL, [...crictlFlags(serve.socket), '--timeout', '20s', ...args]);

  beforeAll(async () => {
    ipForwardBefore = ipForward();
    serve = await startServeProcess();
    net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
  });
  afterAll(async () => {
    await crictl('rmp', '--all', '--force');
    await serve.stop();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
  });

  it('runp, pods, inspectp, stopp and rmp work as with containerd', async () => {
    const podJson = join(serve.dir, 'pod.json');
    await writeFile(
      podJson,
      JSON.stringify({
        metadata: { name: 'crictl-pod', namespace: 'default', uid: 'crictl-uid', attempt: 1 },
        labels: { app: 'demo' },
        hostname: 'crictl-pod',
      }),
    );
    const runp = await crictl('runp', podJson);
    expect(runp.code, runp.stderr).toBe(0);
    const id = runp.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);

    const pods = await crictl('pods', '--name', 'crictl-pod');
    expect(pods.stdout).toMatch(new RegExp(`${id.slice(0, 13)}\\s+.*Ready\\s+crictl-pod\\s+default\\s+1`));

    const inspect = await crictl('inspectp', id.slice(0, 8));
    const parsed = JSON.parse(inspect.stdout) as {
      status: { state: string; network: { ip: string } };
      info: { pid: number; namespaces: object };
    };
    expect(parsed.status.state).toBe('SANDBOX_READY');
    expect(parsed.status.network.ip.startsWith(net.subnet.split('.').slice(0, 3).join('.'))).toBe(true);
    expect(Object.keys(parsed.info.namespaces).sort()).toEqual(['ipc', 'net', 'pid', 'uts']);

    expect((await crictl('stopp', id)).code).toBe(0);
    expect((await crictl('pods', '--id', id, '--state', 'NotReady', '-q')).stdout.trim()).toBe(id);
    expect((await crictl('rmp', id)).code).toBe(0);
    expect((await crictl('pods', '-q')).stdout.trim()).toBe('');
  });

  it('create, start, ps -a, inspect, logs (-t, -f), exec -s, stop and rm work as with containerd', async () => {
    const podJson = join(serve.dir, 'pod-c.json');
    const ctrJson = join(serve.dir, 'ctr.json');
    await writeFile(
      podJson,
      JSON.stringify({
        metadata: { name: 'crictl-c', namespace: 'default', uid: 'crictl-c-uid' },
        log_directory: join(serve.dir, 'pod-logs'),
      }),
    );
    await writeFile(
      ctrJson,
      JSON.stringify({
        metadata: { name: 'ticker' },
        image: { image: 'icetray.local/busybox' },
        command: ['sh', '-c', 'echo started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'],
        log_path: 'ticker.log',
      }),
    );
    expect((await crictl('pull', 'icetray.local/busybox')).code).toBe(0);
    const pod = (await crictl('runp', podJson)).stdout.trim();
    const created = await crictl('create', pod, ctrJson, podJson);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    expect((await crictl('start', id)).code).toBe(0);

    expect((await crictl('ps', '-a')).stdout).toMatch(
      new RegExp(`${id.slice(0, 13)}\\s+icetray.local/busybox.*Running\\s+ticker\\s+0`),
    );
    const inspect = JSON.parse((await crictl('inspect', id)).stdout) as { status: { state: string }; info: { pid: number } };
    expect(inspect.status.state).toBe('CONTAINER_RUNNING');
    expect(inspect.info.pid).toBeGreaterThan(1);

    await new Promise((resolve) => setTimeout(resolve, 600));
    expect((await crictl('logs', id)).stdout).toMatch(/^started\ntick 1\ntick 2\n/);
    expect((await crictl('logs', '-t', '--tail', '1', id)).stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z tick \d+\n$/);
    // -f follows: new ticks arrive while it runs.
    const follow = spawn(CRICTL, [...crictlFlags(serve.socket), 'logs', '-f', '--tail', '0', id]);
    let followed = '';
    follow.stdout.on('data', (chunk: Buffer) => (followed += chunk.toString()));
    for (let i = 0; i < 50 && !/tick \d+\n.*tick \d+\n/s.test(followed); i++)
      await new Promise((resolve) => setTimeout(resolve, 100));
    follow.kill('SIGTERM');
    expect(followed).toMatch(/tick \d+\ntick \d+\n/);

    expect((await crictl('exec', '-s', id, 'sh', '-c', 'echo in the container')).stdout).toMatch(/^in the container\n/);
    // crictl reports a non-zero exit of ExecSync as an error naming the code.
    const failing = await crictl('exec', '-s', id, 'sh', '-c', 'exit 4');
    expect(failing.code).toBe(1);
    expect(failing.stderr).toContain("command 'sh -c exit 4' exited with 4");
    expect((await crictl('stop', id)).code).toBe(0);
    expect((await crictl('ps', '-a', '--id', id)).stdout).toMatch(/Exited/);
    expect((await crictl('rm', id)).code).toBe(0);
    expect((await crictl('ps', '-a', '-q', '--pod', pod)).stdout.trim()).toBe('');
    expect((await crictl('rmp', '-f', pod)).code).toBe(0);
  });
});

describe.skipIf(!isRoot)('the cgroup driver recorded with the first pod (needs root: creates a pod)', () => {
  it('refuses to start with another driver while pods exist, saying why and what to do', async () => {
    const before = ipForward();
    const serve = await startServeProcess();
    const net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
    try {
      const cri = connectCri(serve.socket);
      const { podSandboxId } = await cri.runtime.runPodSandbox({ config: podConfig() });
      await cri.runtime.stopPodSandbox({ podSandboxId });
      cri.close();
      const { readFile, writeFile } = await import('node:fs/promises');
      // The same node, restarted with the other driver (the pod is still there).
      const changed = join(serve.dir, 'systemd.toml');
      await writeFile(
        changed,
        (await readFile(serve.configFile, 'utf8')).replace(/^socket = .*$/m, `socket = "${join(serve.dir, 'other.sock')}"`) +
          '\ncgroup_driver = "systemd"\n',
      );
      const result = await runIcetray(['serve', '--config', changed]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('cgroup_driver is "systemd" but the pods on this node were made with "cgroupfs"');
      expect(result.stderr).toContain('drain the node');
      const again = connectCri(serve.socket);
      await again.runtime.removePodSandbox({ podSandboxId });
      again.close();
    } finally {
      await serve.stop();
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(before);
    }
  });
});
