import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ICETRAY_CLI, runIcetray, runProgram } from './helpers/cli.js';
import { useTempDirs } from './helpers/temp.js';
import { CRICTL, crictlMissing } from './helpers/tools.js';

// Every run names a prefix and a crictl config of the test's own: /usr/local and /etc are never touched.
const tempDir = useTempDirs('icetray-install-');
const socket = '/run/icetray-install-test/icetray.sock';

async function installed() {
  const dir = await tempDir();
  const bin = join(dir, 'bin');
  const crictlYaml = join(dir, 'etc', 'crictl.yaml');
  const args = ['--prefix', dir, '--crictl-config', crictlYaml];
  return {
    dir,
    bin,
    crictlYaml,
    install: (...more: string[]) => runIcetray(['install', ...args, '--socket', socket, ...more]),
    uninstall: () => runIcetray(['uninstall', '--prefix', dir]),
  };
}

describe('icetray install and uninstall, against a prefix of the test', () => {
  it('links icetray and crictl so both run through the links, and points crictl at the socket with both endpoints', async (ctx) => {
    const missing = crictlMissing();
    ctx.skip(missing !== undefined, missing);
    const t = await installed();
    const result = await t.install();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`linked ${join(t.bin, 'icetray')} → ${ICETRAY_CLI}`);
    expect(result.stdout).toContain(`linked ${join(t.bin, 'crictl')} → ${CRICTL}`);
    expect(result.stdout).toContain(`wrote ${t.crictlYaml}`);
    // The next three commands to try.
    expect(result.stdout).toMatch(/icetray doctor[\s\S]*icetray demo[\s\S]*crictl ps/);

    const help = await runProgram(join(t.bin, 'icetray'), ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: icetray <command>');
    const version = await runProgram(join(t.bin, 'crictl'), ['--version']);
    expect(version.stdout).toMatch(/^crictl version \d+\.\d+\.\d+/);

    const yaml = readFileSync(t.crictlYaml, 'utf8');
    expect(yaml).toContain(`runtime-endpoint: unix://${socket}\n`);
    expect(yaml).toContain(`image-endpoint: unix://${socket}\n`);
  });

  it('changes nothing when run again', async () => {
    const t = await installed();
    expect((await t.install()).code).toBe(0);
    const manifest = await readFile(join(t.dir, 'share', 'icetray', 'installed.json'), 'utf8');
    const yaml = await readFile(t.crictlYaml, 'utf8');
    const again = await t.install();
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('(already linked)');
    expect(again.stdout).not.toMatch(/^(linked|wrote) /m);
    expect(await readFile(join(t.dir, 'share', 'icetray', 'installed.json'), 'utf8')).toBe(manifest);
    expect(await readFile(t.crictlYaml, 'utf8')).toBe(yaml);
  });

  it('refuses to overwrite a crictl, an icetray link and a crictl.yaml it did not make, and uninstall leaves them', async () => {
    const t = await installed();
    await mkdir(t.bin, { recursive: true });
    await mkdir(join(t.dir, 'etc'));
    const ownCrictl = '#!/bin/sh\necho my own crictl\n';
    await writeFile(join(t.bin, 'crictl'), ownCrictl, { mode: 0o755 });
    await symlink('/usr/bin/true', join(t.bin, 'icetray'));
    const ownYaml = 'runtime-endpoint: unix:///run/containerd/containerd.sock\n';
    await writeFile(t.crictlYaml, ownYaml);

    const result = await t.install();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`kept ${join(t.bin, 'crictl')}: it is a file that icetray install did not make`);
    expect(result.stdout).toContain(`kept ${join(t.bin, 'icetray')}: it is a link to /usr/bin/true`);
    // The user is told the line to use, not left guessing.
    expect(result.stdout).toContain(`kept ${t.crictlYaml}: it exists and does not name icetray's socket`);
    expect(result.stdout).toContain(`runtime-endpoint: unix://${socket}`);
    expect(readFileSync(join(t.bin, 'crictl'), 'utf8')).toBe(ownCrictl);
    expect(readlinkSync(join(t.bin, 'icetray'))).toBe('/usr/bin/true');
    expect(readFileSync(t.crictlYaml, 'utf8')).toBe(ownYaml);

    const removed = await t.uninstall();
    expect(removed.code).toBe(0);
    expect(removed.stdout).not.toContain('removed');
    expect(readFileSync(join(t.bin, 'crictl'), 'utf8')).toBe(ownCrictl);
    expect(readlinkSync(join(t.bin, 'icetray'))).toBe('/usr/bin/true');
    expect(readFileSync(t.crictlYaml, 'utf8')).toBe(ownYaml);
  });

  it('uninstall removes what install made, and leaves what was changed since or put beside it', async () => {
    const t = await installed();
    expect((await t.install()).code).toBe(0);
    // The user edits crictl.yaml and puts a tool of their own in the bin folder install made.
    await writeFile(t.crictlYaml, `${await readFile(t.crictlYaml, 'utf8')}debug: true\n`);
    await writeFile(join(t.bin, 'mytool'), '#!/bin/sh\n', { mode: 0o755 });

    const removed = await t.uninstall();
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain(`removed ${join(t.bin, 'icetray')}`);
    expect(removed.stdout).toContain(`left ${t.crictlYaml}: changed since icetray install made it`);
    expect(existsSync(join(t.bin, 'icetray'))).toBe(false);
    expect(existsSync(join(t.bin, 'crictl')) && lstatSync(join(t.bin, 'crictl')).isSymbolicLink()).toBe(false);
    expect(readFileSync(t.crictlYaml, 'utf8')).toContain('debug: true');
    expect(existsSync(join(t.bin, 'mytool'))).toBe(true);
    expect(existsSync(join(t.dir, 'share'))).toBe(false);

    // A second uninstall has nothing left to remove.
    expect((await t.uninstall()).stdout).toContain('nothing to remove');
  });

  it('a link install made and the user replaced is not removed', async () => {
    const t = await installed();
    expect((await t.install()).code).toBe(0);
    await runProgram('rm', [join(t.bin, 'icetray')]);
    await symlink('/usr/bin/true', join(t.bin, 'icetray'));
    const removed = await t.uninstall();
    expect(removed.stdout).toContain(`left ${join(t.bin, 'icetray')}: changed since icetray install made it`);
    expect(readlinkSync(join(t.bin, 'icetray'))).toBe('/usr/bin/true');
  });

  it('--systemd says clearly that no unit is installed where systemd is not PID 1', async (ctx) => {
    ctx.skip(existsSync('/run/systemd/system'), 'systemd is PID 1 here: test/systemd-unit.test.ts installs the unit');
    const t = await installed();
    const units = join(t.dir, 'units');
    const result = await t.install('--systemd', '--unit-dir', units);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('systemd is not PID 1 here');
    expect(existsSync(join(units, 'icetray.service'))).toBe(false);
  });
});
