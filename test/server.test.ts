import { status as grpcStatus } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CgroupDriver } from '../src/generated/api.js';
import { loadConfig } from '../src/config/config.js';
import { createRuntime } from '../src/server/runtime.js';
import { startServer } from '../src/server/serve.js';
import { connectCri } from './helpers/cri.js';
import { fakeProcSys, startTestServer, testConfig, type TestServer } from './helpers/server.js';
import { isRoot } from './helpers/tools.js';

describe('the CRI server on a Unix socket', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it('answers Version with all four fields, runtime api v1', async () => {
    const response = await t.cri.runtime.version({ version: '0.1.0' });
    expect(response).toMatchObject({ version: '0.1.0', runtimeName: 'icetray', runtimeApiVersion: 'v1' });
    expect(response.runtimeVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('reports RuntimeReady and NetworkReady conditions', async () => {
    const response = await t.cri.runtime.status({ verbose: false });
    const types = response.status?.conditions.map((condition) => condition.type);
    expect(types).toEqual(['RuntimeReady', 'NetworkReady']);
    for (const condition of response.status?.conditions ?? []) {
      // A false condition always says why.
      if (!condition.status) expect(condition.reason).not.toBe('');
    }
    expect(response.info).toEqual({});
    // The default handler claims recursive read-only mounts only where the kernel has mount_setattr.
    const [major = 0, minor = 0] = release().split('.').map(Number);
    expect(response.runtimeHandlers).toEqual([
      { name: '', features: { recursiveReadOnlyMounts: major > 5 || (major === 5 && minor >= 12), userNamespaces: false } },
    ]);
    expect(response.features).toEqual({ supplementalGroupsPolicy: true, userNamespacesHostNetwork: false, mountOptions: true });
  });

  it.skipIf(!isRoot)('is RuntimeReady as root with the pause binary built', async () => {
    const response = await t.cri.runtime.status({ verbose: false });
    expect(response.status?.conditions[0]).toMatchObject({ type: 'RuntimeReady', status: true });
  });

  it('returns the config in force as JSON info when verbose', async () => {
    const response = await t.cri.runtime.status({ verbose: true });
    expect(JSON.parse(response.info['cgroupDriver'] ?? 'null')).toBe('cgroupfs');
    expect([1, 2]).toContain(JSON.parse(response.info['cgroupVersion'] ?? 'null'));
    expect(JSON.parse(response.info['socket'] ?? 'null')).toBe(t.socket);
    expect(JSON.parse(response.info['pauseImage'] ?? 'null')).toBe('registry.k8s.io/pause:3.10');
    const config = JSON.parse(response.info['config'] ?? '{}') as { values: { socket: string }; sources: { socket: string } };
    expect(config.values.socket).toBe(t.socket);
    expect(config.sources.socket).toBe('flag');
  });

  it('reports the cgroup driver in force through RuntimeConfig', async () => {
    const response = await t.cri.runtime.runtimeConfig({});
    expect(response.linux?.cgroupDriver).toBe(CgroupDriver.CGROUPFS);
  });

  it('writes the pod CIDR the kubelet hands over into the default CNI network', async () => {
    await t.cri.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: '10.99.0.0/24,fd00::/64' } } });
    const conflist = JSON.parse(await readFile(join(t.dir, 'net.d', '10-icetray.conflist'), 'utf8')) as {
      plugins: { ipam?: { ranges: { subnet: string }[][] } }[];
    };
    expect(conflist.plugins[0]?.ipam?.ranges[0]?.[0]?.subnet).toBe('10.99.0.0/24');
    await expect(
      t.cri.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: '10.99.0/24' } } }),
    ).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
      details: expect.stringContaining('runtime_config.network_config.pod_cidr') as string,
    });
  });

  it('answers ImageFsInfo with the image store folder and its usage', async () => {
    const response = await t.cri.image.imageFsInfo({});
    const [fs] = response.imageFilesystems;
    expect(fs?.fsId?.mountpoint).toBe(`${t.dir}/root/images`);
    expect(fs?.timestamp).toBeGreaterThan(0n);
    expect(fs?.inodesUsed?.value).toBeGreaterThanOrEqual(1n);
  });

  it('answers an RPC that is not built yet with UNIMPLEMENTED naming it', async () => {
    await expect(t.cri.runtime.checkpointPod({ podSandboxId: 'x' })).rejects.toMatchObject({
      code: grpcStatus.UNIMPLEMENTED,
      details: 'CheckpointPod is not implemented by icetray yet',
    });
  });

  it('creates the socket with mode 0660', async () => {
    const info = await stat(t.socket);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o660);
  });

  it('refuses to start a second server on a live socket, and the first keeps serving', async () => {
    const second = await createRuntime(loadConfig({ file: `${t.dir}/config.toml`, flags: testConfig(t.dir) }));
    await expect(startServer(second)).rejects.toThrow(/another server is already listening on/);
    const response = await t.cri.runtime.version({ version: '' });
    expect(response.runtimeName).toBe('icetray');
  });
});

/** Leaves a socket file that nobody answers on, as a server killed with SIGKILL does. */
function makeStaleSocket(path: string): Promise<void> {
  const script = `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  return new Promise((resolve) => execFile(process.execPath, ['-e', script], () => resolve()));
}

describe('the socket lifecycle', () => {
  it('replaces a stale socket, and removes its own socket when stopped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'icetray-test-'));
    const socket = join(dir, 'icetray.sock');
    await makeStaleSocket(socket);
    expect((await stat(socket)).isSocket()).toBe(true);

    const runtime = await createRuntime(loadConfig({ file: undefined, flags: testConfig(dir) }), {
      procSys: await fakeProcSys(dir, true),
    });
    const server = await startServer(runtime);
    const cri = connectCri(socket);
    const response = await cri.runtime.version({});
    expect(response.runtimeName).toBe('icetray');
    cri.close();
    await server.stop();
    await expect(stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a socket path that is a regular file, and leaves the file alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'icetray-test-'));
    await writeFile(join(dir, 'icetray.sock'), 'not a socket');
    const runtime = await createRuntime(loadConfig({ file: undefined, flags: testConfig(dir) }));
    await expect(startServer(runtime)).rejects.toThrow(/is not a socket/);
    await expect(readFile(join(dir, 'icetray.sock'), 'utf8')).resolves.toBe('not a socket');
    await rm(dir, { recursive: true, force: true });
  });
});
