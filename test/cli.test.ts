import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIcetray, runProgram, startServeProcess, type ServeProcess } from './helpers/cli.js';
import { CRICTL, crictlFlags, crictlMissing } from './helpers/tools.js';

describe('icetray CLI', () => {
  it('prints help and exits 0 for --help', async () => {
    const main = await runIcetray(['--help']);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain('Usage: icetray <command>');
    const serve = await runIcetray(['serve', '--help']);
    expect(serve.code).toBe(0);
    expect(serve.stdout).toContain('--socket PATH');
  });

  it('exits 2 on an unknown command or flag', async () => {
    expect((await runIcetray(['frobnicate'])).code).toBe(2);
    const badFlag = await runIcetray(['serve', '--sockett', '/x']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("Unknown option '--sockett'");
  });

  it('exits 1 with the key named on a bad config file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'icetray-bad-'));
    await writeFile(join(dir, 'config.toml'), 'cgroup_driver = "systemdd"\n');
    const result = await runIcetray(['serve', '--config', join(dir, 'config.toml')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('config key "cgroup_driver"');
    await rm(dir, { recursive: true });
  });
});

describe('icetray serve, driven by the real crictl', () => {
  let serve: ServeProcess;
  const skip = crictlMissing();
  const crictl = (...args: string[]) => runProgram(CRICTL, [...crictlFlags(serve.socket), '--timeout', '5s', ...args]);

  beforeAll(async () => {
    serve = await startServeProcess();
  });
  afterAll(async () => {
    await serve.stop();
  });

  it('prints the endpoint and a crictl.yaml line at start', () => {
    expect(serve.output()).toContain(`runtime-endpoint: unix://${serve.socket}`);
  });

  it.skipIf(skip !== undefined)(`crictl version names icetray and CRI v1 (${skip ?? 'crictl built'})`, async () => {
    const result = await crictl('version');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/RuntimeName:\s+icetray/);
    expect(result.stdout).toMatch(/RuntimeApiVersion:\s+v1/);
  });

  it.skipIf(skip !== undefined)(
    `crictl info shows both conditions and the cgroup driver (${skip ?? 'crictl built'})`,
    async () => {
      const result = await crictl('info');
      expect(result.code).toBe(0);
      const info = JSON.parse(result.stdout) as { status: { conditions: { type: string }[] }; cgroupDriver: string };
      expect(info.status.conditions.map((c) => c.type)).toEqual(['RuntimeReady', 'NetworkReady']);
      expect(info.cgroupDriver).toBe('cgroupfs');
    },
  );

  it.skipIf(skip !== undefined)(`crictl gets a clear error from an RPC not built yet (${skip ?? 'crictl built'})`, async () => {
    const result = await crictl('checkpoint', '--export', '/tmp/icetray-never.tar', 'no-such-container');
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('is not implemented by icetray yet');
  });

  it('refuses a second server on the same socket, and the first keeps serving', async () => {
    const second = await runIcetray(['serve', '--config', serve.configFile]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`another server is already listening on ${serve.socket}`);
    expect(existsSync(serve.socket)).toBe(true);
    if (skip === undefined) expect((await crictl('version')).code).toBe(0);
  });

  it('removes its socket and exits 0 on SIGTERM', async () => {
    const other = await startServeProcess();
    expect(existsSync(other.socket)).toBe(true);
    const socket = other.socket;
    expect(await other.stop()).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});
