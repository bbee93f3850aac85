import { describe, expect, it } from 'vitest';
import { ContainerConfig } from '../generated/api.js';
import { containerDevices } from './devices.js';

const config = (devices: { containerPath: string; hostPath: string; permissions?: string }[], privileged = false) =>
  ContainerConfig.fromPartial({ devices, linux: { securityContext: { privileged } } });

describe('containerDevices', () => {
  it('takes type, major and minor from the host node, and access from the permissions', async () => {
    const [node] = await containerDevices(config([{ containerPath: '/dev/mynull', hostPath: '/dev/null', permissions: 'rw' }]));
    expect(node).toMatchObject({ path: '/dev/mynull', type: 'c', major: 1, minor: 3, access: 'rw' });
  });

  it('gives all of rwm when permissions are empty (the OCI default)', async () => {
    const [node] = await containerDevices(config([{ containerPath: '/dev/z', hostPath: '/dev/zero', permissions: '' }]));
    expect(node?.access).toBe('rwm');
  });

  it.each([
    ['a relative container path', { containerPath: 'dev/x', hostPath: '/dev/null' }],
    ['a ".." in the container path', { containerPath: '/dev/../etc/x', hostPath: '/dev/null' }],
    ['a relative host path', { containerPath: '/dev/x', hostPath: 'dev/null' }],
    ['a host path that is a plain file', { containerPath: '/dev/x', hostPath: '/etc/hostname' }],
    ['a host path that does not exist', { containerPath: '/dev/x', hostPath: '/dev/icetray-no-such-device' }],
    ['permissions beyond rwm', { containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rwx' }],
    ['permissions given twice', { containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rr' }],
  ])('refuses %s as InvalidArgument', async (_, device) => {
    await expect(containerDevices(config([device]))).rejects.toThrow(expect.objectContaining({ name: 'InvalidArgumentError' }));
  });

  it("gives a privileged container the host's devices, a requested node winning at its path", async () => {
    const nodes = await containerDevices(config([{ containerPath: '/dev/null', hostPath: '/dev/zero' }], true));
    expect(nodes.filter((n) => n.path === '/dev/null')).toEqual([expect.objectContaining({ minor: 5 })]);
    expect(nodes.some((n) => n.path === '/dev/full' && n.major === 1 && n.minor === 7)).toBe(true);
    expect(nodes.some((n) => n.path.startsWith('/dev/pts/'))).toBe(false);
  });

  it('gives a non-privileged container only what it asked for', async () => {
    expect(await containerDevices(config([]))).toEqual([]);
  });
});
