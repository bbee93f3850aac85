import { credentials } from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  ContainerConfig,
  ContainerEventType,
  ContainerState,
  LinuxPodSandboxConfig,
  NamespaceMode,
  RuntimeServiceClient,
  type ContainerEventResponse,
  type DeepPartial,
} from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { runProgram } from './helpers/cli.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { tmuxMissing, tmuxSession } from './helpers/tmux.js';
import { CRICTL, crictlFlags, crictlMissing, isRoot } from './helpers/tools.js';

const skip = !isRoot ? 'needs root: real pods' : crictlMissing();

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe.skipIf(skip !== undefined)(`streaming and events on real containers (${skip ?? 'root, crictl built'})`, () => {
  let t: TestServer;
  let net: TestNetwork;
  let before: string;
  const crictl = (...args: string[]) => runProgram(CRICTL, [...crictlFlags(t.socket), '--timeout', '20s', ...args]);

  beforeAll(async () => {
    before = ipForward();
    t = await startTestServer();
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
    await t.cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
  });
  afterAll(async () => {
    for (const pod of (await t.cri.runtime.listPodSandbox({})).items)
      await t.cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    await t.close();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(before);
  });

  /** A pod (podConfig() unless given) with one started container of `config`. */
  async function runContainer(
    config: DeepPartial<ContainerConfig>,
    pod = podConfig(),
  ): Promise<{ podSandboxId: string; containerId: string }> {
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: pod });
    const container = ContainerConfig.fromPartial(config);
    const { containerId } = await t.cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: pod });
    await t.cri.runtime.startContainer({ containerId });
    return { podSandboxId, containerId };
  }

  it('streams CREATED, STARTED, STOPPED, DELETED events in order (GetContainerEvents)', async () => {
    const client = new RuntimeServiceClient(`unix://${t.socket}`, credentials.createInsecure());
    const events: ContainerEventResponse[] = [];
    const stream = client.getContainerEvents({});
    stream.on('data', (event: ContainerEventResponse) => events.push(event));
    stream.on('error', () => undefined);
    await sleep(100);
    const { podSandboxId, containerId } = await runContainer({
      metadata: { name: 'ev' },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sleep', '300'],
    });
    await t.cri.runtime.stopContainer({ containerId, timeout: 1n });
    await t.cri.runtime.removeContainer({ containerId });
    await sleep(200);
    stream.cancel();
    client.close();
    const mine = events.filter((e) => e.containerId === containerId);
    expect(mine.map((e) => e.containerEventType)).toEqual([
      ContainerEventType.CONTAINER_CREATED_EVENT,
      ContainerEventType.CONTAINER_STARTED_EVENT,
      ContainerEventType.CONTAINER_STOPPED_EVENT,
      ContainerEventType.CONTAINER_DELETED_EVENT,
    ]);
    expect(mine[0]?.podSandboxStatus?.id).toBe(podSandboxId);
  });

  it('crictl exec runs through the streaming server; crictl port-forward reaches a server in the pod', async () => {
    const { podSandboxId, containerId } = await runContainer({
      metadata: { name: 'web' },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sh', '-c', 'mkdir -p /www && echo forwarded > /www/index.html && httpd -f -p 8080 -h /www'],
    });

    const hello = await crictl('exec', containerId, 'sh', '-c', 'echo hello from exec');
    expect(hello.stdout).toBe('hello from exec\n');
    const three = await crictl('exec', containerId, 'sh', '-c', 'exit 3');
    expect(three.code).not.toBe(0);
    expect(three.stderr).toContain('command terminated with exit code 3');

    const forward = spawn(CRICTL, [...crictlFlags(t.socket), 'port-forward', podSandboxId, '18080:8080'], {
      stdio: 'ignore',
    });
    try {
      let body = '';
      for (let i = 0; i < 50 && body === ''; i++) {
        body = await httpGet('http://127.0.0.1:18080/').catch(() => '');
        if (body === '') await sleep(100);
      }
      expect(body).toBe('forwarded\n');
    } finally {
      forward.kill('SIGTERM');
    }
  });

  describe.skipIf(tmuxMissing !== undefined)(
    `on a terminal${tmuxMissing ? ` (skipped: ${tmuxMissing} is not installed)` : ''}`,
    () => {
      const flags = (): string[] => [...crictlFlags(t.socket), '--timeout', '20s'];

      it("crictl exec -it gives a shell on a pty of the container's own /dev/pts, at the client's window size", async () => {
        const { containerId } = await runContainer({
          metadata: { name: 'plain' },
          image: { image: BUILTIN_BUSYBOX_IMAGE },
          command: ['sleep', '300'],
        });
        const shell = tmuxSession([CRICTL, ...flags(), 'exec', '-it', containerId, 'sh'], 101, 31);
        try {
          shell.type('echo result=$((6*7)) $(tty) $(stty size)');
          await shell.screenShows(/result=42 \/dev\/pts\/0 31 101/);
          shell.type('exit');
          await shell.ended();
        } finally {
          shell.kill();
        }
      });

      it('a tty container runs on a pty: crictl attach -it talks to it, its output is logged as stdout', async () => {
        const { containerId } = await runContainer(
          {
            metadata: { name: 'console' },
            image: { image: BUILTIN_BUSYBOX_IMAGE },
            command: ['sh'],
            tty: true,
            stdin: true,
            logPath: 'console.log',
          },
          podConfig({ logDirectory: t.dir }),
        );
        const shell = tmuxSession([CRICTL, ...flags(), 'attach', '-it', containerId], 99, 29);
        try {
          shell.type('echo attached=$(tty) $(stty size)');
          await shell.screenShows(/attached=\/dev\/pts\/0 29 99/);
          shell.type('exit 7');
          await shell.ended();
        } finally {
          shell.kill();
        }
        // The session ends as the process exits; its record follows a moment later.
        let status = await t.cri.runtime.containerStatus({ containerId });
        for (let i = 0; i < 50 && status.status?.state !== ContainerState.CONTAINER_EXITED; i++) {
          await sleep(100);
          status = await t.cri.runtime.containerStatus({ containerId });
        }
        expect(status.status).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 7 });
        const log = readFileSync(join(t.dir, 'console.log'), 'utf8');
        expect(log).toMatch(/ stdout [PF] attached=\/dev\/pts\/0 29 99/);
        expect(log).not.toMatch(/ stderr /);
      });
    },
  );

  it('a tty exec whose client closes its input gets ^D: the shell ends, the session with it', async () => {
    const { containerId } = await runContainer({
      metadata: { name: 'shell-eof' },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sleep', '300'],
    });
    const { url } = await t.cri.runtime.exec({ containerId, cmd: ['sh'], tty: true, stdin: true, stdout: true });
    const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
    let output = '';
    ws.on('message', (data: Buffer) => {
      if (data[0] === 1) output += data.subarray(1).toString();
    });
    await new Promise((resolve) => ws.once('open', resolve));
    // Type only once the shell shows its prompt, as a person would: before that its line editor
    // is not reading yet, and input would meet the terminal's own line discipline instead.
    const shows = async (pattern: RegExp): Promise<void> => {
      for (let i = 0; i < 100 && !pattern.test(output); i++) await sleep(50);
      expect(output).toMatch(pattern);
    };
    await shows(/\/ # /);
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('echo answer=$((20+22))\n')]));
    await shows(/answer=42/);
    ws.send(Buffer.from([255, 0])); // v5: the client closed stdin
    await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  });

  it('closes an exec stream that stays idle for stream_idle_timeout, and ends the command', async () => {
    const idle = await startTestServer({ toml: 'stream_idle_timeout = "1s"' });
    try {
      await idle.cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
      // The node's network: no CNI needed for this one.
      const config = podConfig({
        linux: LinuxPodSandboxConfig.fromPartial({
          securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.POD } },
        }),
      });
      const { podSandboxId } = await idle.cri.runtime.runPodSandbox({ config });
      const container = ContainerConfig.fromPartial({
        metadata: { name: 'idle' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '300'],
      });
      const { containerId } = await idle.cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: config });
      await idle.cri.runtime.startContainer({ containerId });
      const { url } = await idle.cri.runtime.exec({ containerId, cmd: ['sleep', '4242'], stdout: true, stdin: true });
      const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
      const opened = Date.now();
      await new Promise<void>((resolve) => ws.once('close', () => resolve()));
      expect(Date.now() - opened).toBeLessThan(5000);
      // The session's end takes the command with it.
      let left = '1';
      for (let i = 0; i < 50 && left !== '0'; i++) {
        await sleep(100);
        left = (
          await idle.cri.runtime.execSync({
            containerId,
            cmd: ['sh', '-c', 'ps -o args | grep -c "sleep 424[2]" || true'],
            timeout: 5n,
          })
        ).stdout
          .toString()
          .trim();
      }
      expect(left).toBe('0');
      await idle.cri.runtime.removePodSandbox({ podSandboxId });
    } finally {
      await idle.close();
    }
  });
});
