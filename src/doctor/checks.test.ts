import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { checkCni, checkIpForward, checkKubeletDriver, checkSystemd } from './checks.js';

const dir = useTempDirs('icetray-doctor-');

async function procSys(ipForward: string): Promise<string> {
  const root = await dir();
  await mkdir(join(root, 'net', 'ipv4'), { recursive: true });
  await writeFile(join(root, 'net', 'ipv4', 'ip_forward'), `${ipForward}\n`);
  return root;
}

describe('doctor checks', () => {
  it('fails IPv4 forwarding at 0, with the sysctl.d fix', async () => {
    const result = await checkIpForward(await procSys('0'));
    expect(result.ok).toBe(false);
    expect(result.fix).toContain('/etc/sysctl.d/k8s.conf');
    expect(result.fix).toContain('sysctl --system');
    expect((await checkIpForward(await procSys('1'))).ok).toBe(true);
  });

  it.each([
    ['cgroupfs', 'systemd'],
    ['systemd', 'cgroupfs'],
  ] as const)('fails when the kubelet says %s and icetray uses %s, explaining the consequence', async (kubelet, icetray) => {
    const file = join(await dir(), 'config.yaml');
    await writeFile(file, `apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: ${kubelet}\n`);
    const result = await checkKubeletDriver({ cgroupDriver: icetray }, file);
    expect(result.ok).toBe(false);
    expect(result.evidence).toContain(`uses cgroupDriver ${kubelet}, icetray uses ${icetray}`);
    expect(result.fix).toContain(`cgroupDriver: ${icetray}`);
  });

  it("takes the kubelet's default (cgroupfs) when its config names no driver", async () => {
    const file = join(await dir(), 'config.yaml');
    await writeFile(file, 'kind: KubeletConfiguration\n');
    expect((await checkKubeletDriver({ cgroupDriver: 'cgroupfs' }, file)).ok).toBe(true);
    expect((await checkKubeletDriver({ cgroupDriver: 'systemd' }, file)).ok).toBe(false);
  });

  it('fails the systemd driver where systemd is not PID 1', async () => {
    const missing = join(await dir(), 'run-systemd-system');
    expect((await checkSystemd({ cgroupDriver: 'systemd' }, missing)).ok).toBe(false);
    expect((await checkSystemd({ cgroupDriver: 'cgroupfs' }, missing)).ok).toBe(true);
  });

  it("names the instance's bridge, and fails when its pod subnet is routed through another interface (issue #16)", async () => {
    const root = await dir();
    const config = {
      cniConfDir: join(root, 'net.d'),
      cniBinDirs: [join(root, 'no-plugins')],
      podCidr: '10.88.0.0/16',
      rootDir: join(root, 'root'),
      cniBridge: 'icetray-abc123',
    };
    const routes = join(root, 'route');
    // 10.88.0.0/16 on icetray0, as /proc/net/route prints it on this (little-endian) machine.
    await writeFile(
      routes,
      'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\nicetray0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\n',
    );
    const clash = await checkCni(config, routes);
    expect(clash.ok).toBe(false);
    expect(clash.evidence).toContain('network "icetray" (bridge icetray-abc123)');
    expect(clash.evidence).toContain('already routed through icetray0');
    expect(clash.fix).toContain('pod_cidr');
    const free = await checkCni(config, join(root, 'no-routes'));
    expect(free.evidence).toContain('network "icetray" (bridge icetray-abc123)');
  });
});
