import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ContainerConfig, ContainerState } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { runProgram, spawnServe, startServeProcess } from './helpers/cli.js';
import { connectCri, type CriClient } from './helpers/cri.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork } from './helpers/pods.js';
import { CRICTL, crictlFlags, crictlMissing, isRoot } from './helpers/tools.js';

const skip = !isRoot ? 'needs root: real pods' : crictlMissing();

/** The numbers of the "tick N" lines a container logged, in order. */
const ticks = (log: string): number[] => [...log.matchAll(/ stdout F tick (\d+)$/gm)].map((m) => Number(m[1]));

describe.skipIf(skip !== undefined)(`containers across an icetray restart (${skip ?? 'root, crictl built'})`, () => {
  it('SIGKILLed icetray: a running container keeps running and loses no output; ended ones keep their exit codes', async () => {
    const before = ipForward();
    let serve = await startServeProcess();
    const net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
    const logDir = join(serve.dir, 'logs');
    let cri: CriClient = connectCri(serve.socket);
    try {
      await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
      const pod = podConfig({ logDirectory: logDir });
      const { podSandboxId } = await cri.runtime.runPodSandbox({ config: pod });
      const run = async (name: string, script: string, extra: { tty?: boolean; stdin?: boolean } = {}): Promise<string> => {
        const config = ContainerConfig.fromPartial({
          metadata: { name },
          image: { image: BUILTIN_BUSYBOX_IMAGE },
          command: ['sh', '-c', script],
          logPath: `${name}.log`,
          ...extra,
        });
        const { containerId } = await cri.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
        await cri.runtime.startContainer({ containerId });
        return containerId;
      };
      const done = await run('done', 'echo finished; exit 3');
      const ticker = await run('ticker', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done');
      const later = await run('later', 'sleep 1; echo bye; exit 5');
      const stubborn = await run('stubborn', 'trap "" TERM; while :; do sleep 0.1; done');
      // An interactive shell on a terminal: icetray going away must not end its input.
      const console = await run('console', 'exec sh', { tty: true, stdin: true });
      const pidOf = async (id: string): Promise<number> =>
        (
          JSON.parse((await cri.runtime.containerStatus({ containerId: id, verbose: true })).info['info'] ?? '{}') as {
            pid: number;
          }
        ).pid;
      const tickerPid = await pidOf(ticker);
      await sleep(300);

      // No drain, no goodbye: the node's runtime dies. `later` ends while it is away, and
      // `ticker` goes on writing into its pipe, which its monitor keeps open.
      cri.close();
      await serve.kill('SIGKILL');
      await sleep(2000);
      serve = await spawnServe(['--config', serve.configFile], serve.dir, serve.socket, serve.configFile);
      cri = connectCri(serve.socket);

      const status = async (id: string) => (await cri.runtime.containerStatus({ containerId: id })).status;
      expect(await status(done)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 3, reason: 'Error' });
      expect(await status(later)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 5, reason: 'Error' });
      expect(await status(ticker)).toMatchObject({ state: ContainerState.CONTAINER_RUNNING });
      expect(await pidOf(ticker)).toBe(tickerPid);
      expect(await status(console)).toMatchObject({ state: ContainerState.CONTAINER_RUNNING });
      const crictl = (...args: string[]) => runProgram(CRICTL, [...crictlFlags(serve.socket), ...args]);
      expect((await crictl('logs', done)).stdout).toBe('finished\n');
      expect((await crictl('logs', later)).stdout).toBe('bye\n');

      // Every tick is in the log, those written while icetray was away too, and more follow.
      await sleep(500);
      const logged = ticks(readFileSync(join(logDir, 'ticker.log'), 'utf8'));
      expect(logged.length).toBeGreaterThan(40); // ~2.8 s at one tick per 50 ms and more
      expect(logged).toEqual(logged.map((_, i) => i));
      expect(
        (await cri.runtime.execSync({ containerId: ticker, cmd: ['echo', 'still', 'here'], timeout: 5n })).stdout.toString(),
      ).toBe('still here\n');
      await cri.runtime.stopContainer({ containerId: ticker, timeout: 5n });
      expect(await status(ticker)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 143 });
      // One that ignores SIGTERM is SIGKILLed after the timeout, and its monitor records that.
      await cri.runtime.stopContainer({ containerId: stubborn, timeout: 1n });
      expect(await status(stubborn)).toMatchObject({ state: ContainerState.CONTAINER_EXITED, exitCode: 137 });
    } finally {
      await cri.runtime.listPodSandbox({}).then(async ({ items }) => {
        for (const pod of items) await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
      });
      cri.close();
      await serve.stop();
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(before);
    }
  });

  it("a Ctrl-C on icetray's terminal (SIGINT to its process group) stops icetray, not the containers", async () => {
    const before = ipForward();
    let serve = await startServeProcess('', { detached: true });
    const net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
    let cri: CriClient = connectCri(serve.socket);
    try {
      await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
      const pod = podConfig();
      const { podSandboxId } = await cri.runtime.runPodSandbox({ config: pod });
      const config = ContainerConfig.fromPartial({
        metadata: { name: 'calm' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '313'],
      });
      const { containerId } = await cri.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
      await cri.runtime.startContainer({ containerId });
      cri.close();
      // The terminal's SIGINT goes to every process of its foreground group.
      process.kill(-(serve.child.pid ?? 0), 'SIGINT');
      await serve.kill('SIGINT'); // waits for its exit
      serve = await spawnServe(['--config', serve.configFile], serve.dir, serve.socket, serve.configFile);
      cri = connectCri(serve.socket);
      expect((await cri.runtime.containerStatus({ containerId })).status?.state).toBe(ContainerState.CONTAINER_RUNNING);
    } finally {
      for (const pod of (await cri.runtime.listPodSandbox({})).items)
        await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
      cri.close();
      await serve.stop();
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(before);
    }
  });
});
