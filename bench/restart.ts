import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectCri, type CriClient } from '../src/cli/cri-client.js';
import { ContainerConfig, PodSandboxConfig } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { run } from '../src/os/exec.js';
import { serveIcetray, stopChild } from './daemon.js';
import { ms, percentile, printTable } from './stats.js';

const BRIDGE = 'itbenchrst0';

/**
 * Restart to first answer with `pods` live pods, each with a running container: icetray is
 * SIGKILLed and started again over the same state, which it checks and recovers before it
 * serves (issue #11's target: under 1 s with 50 pods). A separate process, as a node runs it.
 */
export async function benchRestart(pods: number, rounds = 5): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'icetray-bench-restart-'));
  const socket = join(dir, 'icetray.sock');
  const configFile = join(dir, 'config.toml');
  await writeFile(
    configFile,
    [
      `socket = "${socket}"`,
      `root_dir = "${join(dir, 'root')}"`,
      `state_dir = "${join(dir, 'run')}"`,
      `cni_conf_dir = "${join(dir, 'net.d')}"`,
      'log_level = "warn"',
    ].join('\n'),
  );
  await run('mkdir', ['-p', join(dir, 'net.d')]);
  await writeFile(
    join(dir, 'net.d', '10-bench.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'icetray-bench-restart',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: '10.249.0.0/16' }]], dataDir: join(dir, 'leases') },
        },
      ],
    }),
  );
  // The bridge plugin (isGateway) turns ip_forward on: the bench puts it back as it was.
  const ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  let server = await serveIcetray(configFile, socket);
  let cri: CriClient = connectCri(socket);
  const empty = server.ms;
  const times: number[] = [];
  try {
    await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
    for (let i = 0; i < pods; i++) {
      const config = PodSandboxConfig.fromPartial({
        metadata: { name: `r${String(i)}`, namespace: 'bench', uid: `restart-${String(i)}` },
      });
      const { podSandboxId } = await cri.runtime.runPodSandbox({ config });
      const container = ContainerConfig.fromPartial({
        metadata: { name: 'c' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '3600'],
      });
      const { containerId } = await cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: config });
      await cri.runtime.startContainer({ containerId });
    }
    for (let round = 0; round < rounds; round++) {
      cri.close();
      await stopChild(server.child);
      server = await serveIcetray(configFile, socket);
      times.push(server.ms);
      cri = connectCri(socket);
    }
    printTable(
      `Restart to first answer after a SIGKILL, with ${String(pods)} pods each running a container (${String(rounds)} restarts; target < 1 s)`,
      ['state', 'p50', 'max'],
      [
        ['no pods (node start)', ms(empty), ms(empty)],
        [`${String(pods)} pods, ${String(pods)} containers`, ms(percentile(times, 50)), ms(Math.max(...times))],
      ],
    );
  } finally {
    for (const pod of (await cri.runtime.listPodSandbox({}).catch(() => ({ items: [] }))).items)
      await cri.runtime.removePodSandbox({ podSandboxId: pod.id }).catch(() => undefined);
    cri.close();
    await stopChild(server.child);
    await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    await writeFile('/proc/sys/net/ipv4/ip_forward', ipForward);
    await rm(dir, { recursive: true, force: true });
  }
}
