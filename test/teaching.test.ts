import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCri } from './helpers/cri.js';
import { runIcetray, startServeProcess, type ServeProcess } from './helpers/cli.js';
import { ipForward, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { isRoot } from './helpers/tools.js';

describe.skipIf(!isRoot)('icetray demo and doctor against a running icetray (needs root: real pods)', () => {
  let serve: ServeProcess;
  let net: TestNetwork;
  let before: string;
  beforeAll(async () => {
    before = ipForward();
    serve = await startServeProcess();
    net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
  });
  afterAll(async () => {
    await serve.stop();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(before);
  });

  it('runs every demo step PASS, through the CRI, and leaves no pod behind', async () => {
    const result = await runIcetray(['demo', '--config', serve.configFile]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    for (const step of ['network', 'ipc', 'pid', 'restart', 'pause-image', 'cgroup-driver'])
      expect(result.stdout).toMatch(new RegExp(`\\) ${step}\\n(?:    .*\\n)*    PASS`));
    expect(result.stdout).toMatch(/6 of 6 steps passed in \d+\.\d s/);
    const cri = connectCri(serve.socket);
    expect((await cri.runtime.listPodSandbox({})).items).toEqual([]);
    cri.close();
    const explainNone = await runIcetray(['doctor', '--config', serve.configFile, '--output', 'json']);
    const report = JSON.parse(explainNone.stdout) as { checks: { name: string; ok: boolean; evidence: string }[] };
    expect(report.checks.find((c) => c.name === 'CRI socket')?.ok).toBe(true);
    expect(report.checks.find((c) => c.name === 'pause image')).toMatchObject({ ok: true });
  });

  it('doctor fails on a kubelet config whose cgroup driver differs, naming the fix', async () => {
    const { writeFile } = await import('node:fs/promises');
    const kubelet = join(serve.dir, 'kubelet.yaml');
    await writeFile(kubelet, 'kind: KubeletConfiguration\ncgroupDriver: systemd\n');
    const result = await runIcetray(['doctor', '--config', serve.configFile, '--kubelet-config', kubelet]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('✗ kubelet cgroup driver');
    expect(result.stdout).toContain('uses cgroupDriver systemd, icetray uses cgroupfs');
  });

  it('config show names where each value came from', async () => {
    const result = await runIcetray(['config', 'show', '--config', serve.configFile, '--output', 'json']);
    const shown = JSON.parse(result.stdout) as { origins: Record<string, string> };
    expect(shown.origins['socket']).toBe(`${serve.configFile}: socket`);
    expect(shown.origins['pauseImage']).toBe('default');
  });
});
