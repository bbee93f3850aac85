import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { DEFAULTS, defaultBridge, loadConfig, parseConfigText } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'icetray-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
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
    ['stream_idle_timeout = "4 hours"', /config key "stream_idle_timeout": expected a duration like "4h0m0s"/],
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
    expect(parseConfigText('', 'empty.toml')).toEqual({ settings: {}, keys: {}, warnings: [] });
  });

  it("accepts containerd's SystemdCgroup and sandbox_image in icetray's own file", () => {
    const loaded = loadConfig({
      file: file(
        [
          'version = 2',
          '[plugins."io.containerd.grpc.v1.cri"]',
          '  sandbox_image = "registry.example:5000/pause:3.9"',
          '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
          '  SystemdCgroup = true',
        ].join('\n'),
      ),
    });
    expect(loaded.config.cgroupDriver).toBe('systemd');
    expect(loaded.config.pauseImage).toBe('registry.example:5000/pause:3.9');
    expect(loaded.origins.cgroupDriver).toMatch(
      /plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.runc\.options\.SystemdCgroup$/,
    );
  });

  it("accepts CRI-O's cgroup_manager and checks conmon_cgroup the way CRI-O does", () => {
    const ok = loadConfig({ file: file('[crio.runtime]\ncgroup_manager = "cgroupfs"\nconmon_cgroup = "pod"\n') });
    expect(ok.config.cgroupDriver).toBe('cgroupfs');
    expect(ok.warnings).toEqual(['crio key "crio.runtime.conmon_cgroup" was checked but has no effect: icetray runs no conmon']);
    expect(() =>
      loadConfig({ file: file('[crio.runtime]\ncgroup_manager = "cgroupfs"\nconmon_cgroup = "system.slice"\n') }),
    ).toThrow(/must be "pod" with cgroup_manager = "cgroupfs"/);
  });

  it('refuses a file whose icetray and containerd keys disagree', () => {
    const text =
      'cgroup_driver = "cgroupfs"\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\nSystemdCgroup = true\n';
    expect(() => loadConfig({ file: file(text) })).toThrow(/"cgroup_driver" and containerd's ".*SystemdCgroup" disagree/);
  });

  it('reads a containerd 2.x config as --flavor containerd: socket, pinned sandbox image, driver, warnings', () => {
    const text = [
      'version = 3',
      'root = "/var/lib/containerd"',
      '[grpc]',
      '  address = "/run/containerd/containerd.sock"',
      '[plugins."io.containerd.cri.v1.images".pinned_images]',
      '  sandbox = "registry.k8s.io/pause:3.10"',
      '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]',
      '  SystemdCgroup = false',
    ].join('\n');
    const loaded = loadConfig({ file: file(text), flavor: 'containerd' });
    expect(loaded.config).toMatchObject({
      socket: '/run/containerd/containerd.sock',
      cgroupDriver: 'cgroupfs',
      pauseImage: 'registry.k8s.io/pause:3.10',
    });
    expect(loaded.warnings).toEqual(['containerd key "root" is not honoured by icetray and has no effect']);
  });

  it("takes the flavor's default socket when its file does not set one", () => {
    const loaded = loadConfig({ file: file('[crio.image]\npause_image = "registry.k8s.io/pause:3.9"\n'), flavor: 'crio' });
    expect(loaded.config.socket).toBe('/var/run/crio/crio.sock');
    expect(loaded.sources.socket).toBe('flavor');
    expect(loaded.config.pauseImage).toBe('registry.k8s.io/pause:3.9');
  });

  it("reads the streaming server's settings in containerd's and CRI-O's spelling (ports as strings)", () => {
    const containerd = loadConfig({
      file: file(
        '[plugins."io.containerd.grpc.v1.cri"]\nstream_server_address = "0.0.0.0"\nstream_server_port = "10010"\nstream_idle_timeout = "30m"\n',
      ),
    });
    expect(containerd.config).toMatchObject({
      streamServerAddress: '0.0.0.0',
      streamServerPort: 10010,
      streamIdleTimeout: '30m',
    });
    const crio = loadConfig({ file: file('[crio.api]\nstream_port = "0"\nstream_idle_timeout = ""\n') });
    expect(crio.config).toMatchObject({ streamServerPort: 0, streamIdleTimeout: '0' });
  });

  describe('runtime handlers (issue #16)', () => {
    it('declares only the default handler "" by default', () => {
      expect(DEFAULTS.runtimeHandlers).toEqual(['']);
      expect(loadConfig({ file: file('') }).config.runtimeHandlers).toEqual(['']);
    });

    it('reads runtime_handlers, keeps "" first, and lets --runtime-handler add more', () => {
      const loaded = loadConfig({
        file: file('runtime_handlers = ["test-handler"]\n'),
        flags: { runtimeHandlers: ['other', 'test-handler'] },
      });
      expect(loaded.config.runtimeHandlers).toEqual(['', 'test-handler', 'other']);
      expect(loaded.origins.runtimeHandlers).toMatch(/runtime_handlers, then command line: --runtime-handler$/);
    });

    it.each([
      ['runtime_handlers = "test-handler"', /expected a list of runtime handler names/],
      ['runtime_handlers = ["Test"]', /DNS labels/],
      ['runtime_handlers = ["a/../b"]', /DNS labels/],
      ['runtime_handlers = ["a\\u0000b"]', /DNS labels/],
      [`runtime_handlers = ["${'a'.repeat(64)}"]`, /DNS labels/],
      ['runtime_handlers = ["x", "x"]', /each runtime handler once, got "x"/],
    ])('rejects %s', (text, message) => {
      expect(() => loadConfig({ file: file(text) })).toThrow(message);
    });

    it("takes containerd's runtime tables as handlers, test-handler as the node e2e CI writes it", () => {
      const text = [
        'version = 3',
        '[plugins."io.containerd.cri.v1.runtime".containerd]',
        '  default_runtime_name = "runc"',
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]',
        '  runtime_type = "io.containerd.runc.v2"',
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler]',
        '  runtime_type = "io.containerd.runc.v2"',
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.empty]',
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata]',
        '  runtime_type = "io.containerd.kata.v2"',
      ].join('\n');
      const loaded = loadConfig({ file: file(text), flavor: 'containerd' });
      expect(loaded.config.runtimeHandlers).toEqual(['', 'runc', 'test-handler', 'empty']);
      // A VM runtime is refused rather than run without the isolation it promises.
      expect(loaded.warnings).toEqual([
        expect.stringMatching(/runtime "kata" has runtime_type "io\.containerd\.kata\.v2".*refused/),
      ]);
    });

    it("takes CRI-O's runtime tables as handlers, and a SystemdCgroup of any handler must agree", () => {
      const crio = loadConfig({ file: file('[crio.runtime.runtimes.crun]\n[crio.runtime.runtimes.vm]\nruntime_type = "vm"\n') });
      expect(crio.config.runtimeHandlers).toEqual(['', 'crun']);
      const disagree = [
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        'SystemdCgroup = true',
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler.options]',
        'SystemdCgroup = false',
      ].join('\n');
      expect(() => loadConfig({ file: file(disagree) })).toThrow(
        /keys ".*runc\.options\.SystemdCgroup" and ".*test-handler\.options\.SystemdCgroup" disagree/,
      );
    });
  });

  describe('the default CNI bridge, per instance (issue #16)', () => {
    it('is icetray0 for the default root dir, however it is spelt', () => {
      expect(defaultBridge('/var/lib/icetray')).toBe('icetray0');
      expect(defaultBridge('/var/lib/icetray/')).toBe('icetray0');
      expect(loadConfig({ file: file('') }).config.cniBridge).toBe('icetray0');
    });

    it('is a stable, valid interface name of its own for any other root dir', () => {
      const a = defaultBridge('/tmp/a/root');
      expect(a).toMatch(/^icetray-[0-9a-f]{6}$/);
      expect(a.length).toBeLessThanOrEqual(15);
      expect(defaultBridge('/tmp/a/root')).toBe(a);
      expect(defaultBridge('/tmp/b/root')).not.toBe(a);
      const loaded = loadConfig({ file: file(''), flags: { rootDir: '/tmp/a/root' } });
      expect(loaded.config.cniBridge).toBe(a);
      expect(loaded.sources.cniBridge).toBe('default');
      expect(loaded.origins.cniBridge).toBe('default for root_dir /tmp/a/root');
    });

    it('can be set with cni_bridge, which must be an interface name', () => {
      expect(loadConfig({ file: file('cni_bridge = "br-test"\nroot_dir = "/tmp/x"\n') }).config.cniBridge).toBe('br-test');
      expect(() => loadConfig({ file: file('cni_bridge = "much-too-long-name"\n') })).toThrow(/config key "cni_bridge"/);
      expect(() => loadConfig({ file: file('cni_bridge = "a/b"\n') })).toThrow(/config key "cni_bridge"/);
    });
  });
});
