import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceMode } from '../src/generated/api.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { connectCri, type CriClient } from './helpers/cri.js';
import { ICETRAY_CLI, runProgram } from './helpers/cli.js';
import { podConfig } from './helpers/pods.js';
import { bootSystemd, systemdUnavailable, type BootedSystemd } from './helpers/systemd.js';

/**
 * examples/systemd/icetray.service, installed by `icetray install --systemd` into a real systemd
 * booted in namespaces of its own (test/helpers/systemd.ts). Everything icetray keeps — socket,
 * state, images, the links install makes — is under that systemd's own /run (a tmpfs of its mount
 * namespace), so nothing of the host is written; a drop-in only adds --config to ExecStart.
 */

const why = systemdUnavailable();
const DIR = '/run/icetray-unit';
const SOCKET = `${DIR}/icetray.sock`;

describe.skipIf(why !== undefined)(`icetray.service under a real systemd${why === undefined ? '' : ` (skipped: ${why})`}`, () => {
  let systemd: BootedSystemd;
  let cri: CriClient | undefined;
  /** A path inside systemd's mount namespace, as the host reaches it. */
  const inside = (path: string) => join(systemd.root, path);
  const nsenter = (args: string[]) =>
    runProgram(
      'nsenter',
      ['--target', String(systemd.pid), '--mount', '--pid', '--uts', '--ipc', '--net', '--cgroup', '--', ...args],
      30_000,
    );
  const mainPid = async () => Number((await systemd.systemctl('show', '--property=MainPID', '--value', 'icetray')) || 0);
  /** Waits until the unit is active and its socket answers Version, and returns a client on it. */
  const answering = async (): Promise<CriClient> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = connectCri(inside(SOCKET), 2_000);
      const ok = await client.runtime.version({}).then(
        (v) => v.runtimeName === 'icetray',
        () => false,
      );
      if (ok) return client;
      client.close();
      if (Date.now() > deadline)
        throw new Error(`icetray.service did not answer: ${await systemd.systemctl('status', 'icetray')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  beforeAll(async () => {
    systemd = await bootSystemd();
    await mkdir(inside(DIR), { recursive: true });
    await writeFile(
      inside(`${DIR}/config.toml`),
      [
        `socket = "${SOCKET}"`,
        `root_dir = "${DIR}/root"`,
        `state_dir = "${DIR}/state"`,
        `cni_conf_dir = "${DIR}/net.d"`,
        'enable_ip_forward = false',
      ].join('\n'),
    );
  }, 40_000);

  afterAll(async () => {
    cri?.close();
    await systemd.stop();
  }, 60_000);

  it('icetray install --systemd installs the unit where systemd is PID 1, naming its own link in ExecStart', async () => {
    const installed = await nsenter([
      process.execPath,
      ICETRAY_CLI,
      'install',
      '--systemd',
      ...['--prefix', `${DIR}/prefix`, '--crictl-config', `${DIR}/crictl.yaml`, '--socket', SOCKET],
      ...['--unit-dir', '/run/systemd/system'],
    ]);
    expect(installed.stderr).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain('wrote /run/systemd/system/icetray.service');
    const unit = await readFile(inside('/run/systemd/system/icetray.service'), 'utf8');
    expect(unit).toContain(`ExecStart=${DIR}/prefix/bin/icetray serve\n`);
    const example = await readFile(join(PACKAGE_ROOT, 'examples', 'systemd', 'icetray.service'), 'utf8');
    expect(unit).toBe(example.replace('ExecStart=/usr/local/bin/icetray', `ExecStart=${DIR}/prefix/bin/icetray`));
    // The unit's settings as systemd read them.
    expect(await systemd.systemctl('show', '--property=Type,Delegate,KillMode', 'icetray')).toBe(
      'Type=exec\nDelegate=yes\nKillMode=process',
    );
  });

  it('starts icetray: systemctl is-active says active and the CRI socket answers Version', async () => {
    await mkdir(inside('/run/systemd/system/icetray.service.d'), { recursive: true });
    await writeFile(
      inside('/run/systemd/system/icetray.service.d/config.conf'),
      `[Service]\nExecStart=\nExecStart=${DIR}/prefix/bin/icetray serve --config ${DIR}/config.toml\n`,
    );
    await systemd.systemctl('daemon-reload');
    await systemd.systemctl('start', 'icetray');
    expect(await systemd.systemctl('is-active', 'icetray')).toBe('active');
    cri = await answering();
    const version = await cri.runtime.version({});
    expect(version.runtimeApiVersion).toBe('v1');
  }, 60_000);

  /**
   * KillMode=process is a second guard here, not the only one: icetray moves each container and
   * its monitor into the pod's cgroup in every hierarchy (name=systemd too) before it runs, so a
   * stop signals only what is still in the unit's cgroup — icetray itself, and an exec or a
   * create in flight (measured: with KillMode=control-group this container survives as well).
   * The test checks both: the container lives on, and the unit's cgroup never held it.
   */
  it("a running container outlives systemctl restart icetray, outside the unit's cgroup", async () => {
    if (cri === undefined) throw new Error('the unit did not start');
    await cri.image.pullImage({ image: { image: 'icetray.local/busybox:latest' } });
    // Host network: the test is about the process tree, not CNI.
    const config = podConfig({ logDirectory: `${DIR}/logs` });
    const namespaceOptions = config.linux?.securityContext?.namespaceOptions;
    if (namespaceOptions !== undefined) namespaceOptions.network = NamespaceMode.NODE;
    const { podSandboxId } = await cri.runtime.runPodSandbox({ config });
    const { containerId } = await cri.runtime.createContainer({
      podSandboxId,
      sandboxConfig: config,
      config: {
        metadata: { name: 'sleeper' },
        image: { image: 'icetray.local/busybox:latest' },
        command: ['sleep', '3600'],
        logPath: 'sleeper.log',
      },
    });
    await cri.runtime.startContainer({ containerId });
    const before = await cri.runtime.containerStatus({ containerId, verbose: true });
    const pidBefore = (JSON.parse(before.info['info'] ?? '{}') as { pid?: number }).pid;
    expect(typeof pidBefore).toBe('number');
    const icetrayBefore = await mainPid();
    // The process itself, as systemd's PID namespace sees it: its start time tells a reused pid apart.
    const processOf = (pid: number) =>
      readFile(inside(`/proc/${pid}/stat`), 'utf8').then(
        (stat) => stat.split(' ')[21],
        () => 'gone',
      );
    const started = await processOf(pidBefore ?? 0);

    cri.close();
    cri = undefined;
    await systemd.systemctl('restart', 'icetray');
    cri = await answering();
    expect(await systemd.systemctl('is-active', 'icetray')).toBe('active');
    expect(await mainPid()).not.toBe(icetrayBefore);

    const after = await cri.runtime.containerStatus({ containerId, verbose: true });
    expect(after.status?.state).toBe(1); // CONTAINER_RUNNING
    expect((JSON.parse(after.info['info'] ?? '{}') as { pid?: number }).pid).toBe(pidBefore);
    expect(await processOf(pidBefore ?? 0)).toBe(started);
    const cgroups = await readFile(inside(`/proc/${pidBefore ?? 0}/cgroup`), 'utf8');
    // The cgroup systemd tracks units by: name=systemd on v1, the unified tree on v2.
    const tracked = /^(?:\d+:name=systemd|0:):(\S*)$/m.exec(cgroups)?.[1] ?? '';
    expect(tracked).toMatch(/\/kubepods\//);
    expect(tracked).not.toContain('icetray.service');
    expect(await readFile(inside(`/proc/${pidBefore ?? 0}/cmdline`), 'utf8')).toBe('sleep\x003600\x00');

    await cri.runtime.stopPodSandbox({ podSandboxId });
    await cri.runtime.removePodSandbox({ podSandboxId });
  }, 90_000);
});
