import { status as grpcStatus } from '@grpc/grpc-js';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerConfig, ContainerState, Signal } from '../src/generated/api.js';
import { containersDir } from '../src/containers/state.js';
import { sha256 } from '../src/images/oci.js';
import { buildBusyboxImage } from '../src/images/pause-image.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { codeOf } from './helpers/hostile.js';
import { ipForward, isAlive, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { startFakeRegistry, type FakeRegistry, type TestImage } from './helpers/registry.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { isRoot } from './helpers/tools.js';

const APPLETS = ['sh', 'sleep', 'echo'];

/** The node's busybox image with a STOPSIGNAL in its config, as a registry serves it. */
async function busyboxStoppedBy(stopSignal: string): Promise<TestImage> {
  const local = await buildBusyboxImage('/bin/busybox', APPLETS);
  const parsed = JSON.parse(local.config.toString()) as { config: Record<string, unknown> };
  parsed.config['StopSignal'] = stopSignal;
  const config = Buffer.from(JSON.stringify(parsed));
  const manifest = JSON.parse(local.manifest.toString()) as { config: { digest: string; size: number } };
  manifest.config = { ...manifest.config, digest: sha256(config), size: config.length };
  const layer = local.layers[0];
  if (layer === undefined) throw new Error('the busybox image has no layer');
  return {
    blobs: new Map([
      [sha256(config), config],
      [sha256(layer.blob), layer.blob],
    ]),
    manifest: Buffer.from(JSON.stringify(manifest)),
    manifestType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: sha256(config),
    layerDigests: [sha256(layer.blob)],
  };
}

describe.skipIf(!isRoot)('StopContainer sends the stop signal (KEP-4960; needs root: real pods)', () => {
  let t: TestServer;
  let registry: FakeRegistry;
  let stopSignalImage: string;
  let net: TestNetwork;
  let ipForwardBefore: string;
  const logDirectory = (): string => join(t.dir, 'logs');

  beforeAll(async () => {
    ipForwardBefore = ipForward();
    t = await startTestServer();
    // A network of the test's own, removed after: never the default bridge and range.
    net = writeTestNetwork(t.runtime.loaded.config.cniConfDir, t.dir);
    registry = await startFakeRegistry();
    registry.add('stop-signal', 'usr2', await busyboxStoppedBy('SIGUSR2'));
    stopSignalImage = `${registry.host}/stop-signal:usr2`;
    await t.cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
    await t.cri.image.pullImage({ image: { image: stopSignalImage } });
  }, 60_000);
  afterAll(async () => {
    for (const p of (await t.cri.runtime.listPodSandbox({})).items) await t.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    await t.close();
    await registry.stop();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(ipForwardBefore);
  });

  /** A container whose shell logs the signal it traps and exits 0; any other signal ends it with 128+n. */
  async function trapping(name: string, image: string, trap: string, stopSignal: Signal): Promise<string> {
    const config = podConfig({ logDirectory: logDirectory() });
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config });
    const { containerId } = await t.cri.runtime.createContainer({
      podSandboxId,
      sandboxConfig: config,
      config: ContainerConfig.fromPartial({
        metadata: { name },
        image: { image },
        command: ['sh', '-c', `trap 'echo got ${trap}; exit 0' ${trap}; echo ready; while :; do sleep 0.1; done`],
        logPath: `${name}.log`,
        stopSignal,
      }),
    });
    await t.cri.runtime.startContainer({ containerId });
    for (let i = 0; i < 100 && !(await log(name)).includes('ready'); i++) await sleep(50);
    return containerId;
  }
  const log = (name: string): Promise<string> => readFile(join(logDirectory(), `${name}.log`), 'utf8').catch(() => '');

  it.each([
    ["the config's stop_signal, over the image's STOPSIGNAL", 'config', 'USR1', Signal.SIGNAL_SIGUSR1, true],
    ["the image's STOPSIGNAL when the config has none", 'image', 'USR2', Signal.SIGNAL_SIGUSR2, true],
    ['SIGTERM when neither has one', 'default', 'TERM', Signal.SIGNAL_SIGTERM, false],
  ])('sends %s, and ContainerStatus reports it', async (_what, name, trap, signal, fromStopSignalImage) => {
    const image = fromStopSignalImage ? stopSignalImage : BUILTIN_BUSYBOX_IMAGE;
    const configSignal = name === 'config' ? signal : Signal.SIGNAL_RUNTIME_DEFAULT;
    const containerId = await trapping(name, image, trap, configSignal);
    expect((await t.cri.runtime.containerStatus({ containerId })).status?.stopSignal).toBe(signal);
    const started = Date.now();
    await t.cri.runtime.stopContainer({ containerId, timeout: 20n });
    // Well before the timeout's SIGKILL, and by the trap: another signal would end sh with 128+n.
    expect(Date.now() - started).toBeLessThan(10_000);
    const status = (await t.cri.runtime.containerStatus({ containerId })).status;
    expect(status?.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(status?.exitCode).toBe(0);
    expect(status?.stopSignal).toBe(signal);
    expect(await log(name)).toMatch(new RegExp(` stdout F got ${trap}$`, 'm'));
  });

  it('stops a container whose stop_signal is SIGSTOP: it is frozen, then killed after the timeout (the monitor stays free to record it)', async () => {
    const containerId = await trapping('frozen', BUILTIN_BUSYBOX_IMAGE, 'TERM', Signal.SIGNAL_SIGSTOP);
    await t.cri.runtime.stopContainer({ containerId, timeout: 1n });
    const status = (await t.cri.runtime.containerStatus({ containerId })).status;
    expect(status?.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(status?.exitCode).toBe(137);
  });

  it('stops a container whose stop_signal is SIGKILL at once, and its process is gone (the monitor is not what is killed)', async () => {
    const containerId = await trapping('killed', BUILTIN_BUSYBOX_IMAGE, 'TERM', Signal.SIGNAL_SIGKILL);
    const info = (await t.cri.runtime.containerStatus({ containerId, verbose: true })).info['info'] ?? '{}';
    const { pid } = JSON.parse(info) as { pid: number };
    const started = Date.now();
    await t.cri.runtime.stopContainer({ containerId, timeout: 20n });
    expect(Date.now() - started).toBeLessThan(10_000);
    const status = (await t.cri.runtime.containerStatus({ containerId })).status;
    expect(status?.state).toBe(ContainerState.CONTAINER_EXITED);
    expect(status?.exitCode).toBe(137);
    expect(isAlive(pid)).toBe(false);
  });

  it('refuses an unknown stop_signal at CreateContainer (INVALID_ARGUMENT), leaving no container behind', async () => {
    const config = podConfig();
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config });
    const dir = containersDir(t.runtime.loaded.config.rootDir);
    const before = await readdir(dir).catch(() => []);
    const create = t.cri.runtime.createContainer({
      podSandboxId,
      sandboxConfig: config,
      config: ContainerConfig.fromPartial({
        metadata: { name: 'unknown' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '1'],
        // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- a number the enum lacks, as the wire can carry
        stopSignal: 99 as Signal,
      }),
    });
    expect(await codeOf(create)).toBe(grpcStatus.INVALID_ARGUMENT);
    expect((await t.cri.runtime.listContainers({ filter: { podSandboxId } })).containers).toEqual([]);
    expect(await readdir(dir).catch(() => [])).toEqual(before);
  });
});
