import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { DEFAULTS, loadConfig, parseConfigText } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'icetray-config-'));
function file(text: string): string {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(path, text);
  return path;
}

describe('config', () => {
  it('uses the defaults when no file exists at the default path', () => {
    const loaded = loadConfig({ file: undefined });
    // The machine running the tests has no /etc/icetray/config.toml unless an admin made one.
    if (loaded.file === undefined) {
      expect(loaded.config).toEqual(DEFAULTS);
      expect(new Set(Object.values(loaded.sources))).toEqual(new Set(['default']));
    }
  });

  it('reads snake_case keys and records that they came from the file', () => {
    const loaded = loadConfig({
      file: file('socket = "/tmp/x.sock"\ncgroup_driver = "systemd"\ncni_bin_dirs = ["/opt/cni/bin"]\n'),
    });
    expect(loaded.config.socket).toBe('/tmp/x.sock');
    expect(loaded.config.cgroupDriver).toBe('systemd');
    expect(loaded.config.cniBinDirs).toEqual(['/opt/cni/bin']);
    expect(loaded.sources.socket).toBe('file');
    expect(loaded.sources.podCidr).toBe('default');
  });

  it('lets flags win over the file', () => {
    const loaded = loadConfig({ file: file('socket = "/tmp/file.sock"\n'), flags: { socket: '/tmp/flag.sock' } });
    expect(loaded.config.socket).toBe('/tmp/flag.sock');
    expect(loaded.sources.socket).toBe('flag');
  });

  it.each([
    ['cgroup_driver = "cgroupsfs"', /config key "cgroup_driver": expected one of cgroupfs, systemd/],
    ['socket = "relative.sock"', /config key "socket": expected an absolute path/],
    ['pod_cidr = "10.88.0.0"', /config key "pod_cidr": expected an IPv4 CIDR/],
    ['pod_cidr = "10.300.0.0/16"', /config key "pod_cidr"/],
    ['enable_ip_forward = "yes"', /config key "enable_ip_forward": expected true or false/],
    ['log_level = "loud"', /config key "log_level"/],
    ['sandbox_image = "x"', /unknown key "sandbox_image"/],
    ['socket = ', /config file .*\.toml/],
  ])('rejects %s, naming the key', (text, message) => {
    expect(() => loadConfig({ file: file(text) })).toThrow(message);
    expect(() => loadConfig({ file: file(text) })).toThrow(InvalidArgumentError);
  });

  it('rejects a --config file that does not exist', () => {
    expect(() => loadConfig({ file: join(dir, 'missing.toml') })).toThrow(/does not exist/);
  });

  it('rejects a flag value the same way as a file value', () => {
    expect(() => loadConfig({ file: file(''), flags: { socket: 'x.sock' } })).toThrow(/config key "socket"/);
  });

  it('parses an empty file to no settings', () => {
    expect(parseConfigText('', 'empty.toml')).toEqual({});
  });
});
