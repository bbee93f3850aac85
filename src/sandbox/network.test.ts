import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { DEFAULT_CONFLIST_FILE, defaultConflist, loadNetwork, podCidrConflict, readRoutes } from './network.js';

const dir = useTempDirs('icetray-network-');

/** An address or mask as /proc/net/route prints it: the 32-bit word as it sits in memory. */
function hex(a: number, b: number, c: number, d: number): string {
  const bytes = Buffer.from([a, b, c, d]);
  const word = endianness() === 'LE' ? bytes.readUInt32LE(0) : bytes.readUInt32BE(0);
  return word.toString(16).toUpperCase().padStart(8, '0');
}

/** A /proc/net/route of the given routes: [iface, destination bytes, prefix]. */
async function routeFile(routes: [string, [number, number, number, number], number][]): Promise<string> {
  const lines = ['Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT'];
  for (const [iface, [a, b, c, d], prefix] of routes) {
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    const m = [mask >>> 24, (mask >>> 16) & 255, (mask >>> 8) & 255, mask & 255] as const;
    lines.push(`${iface}\t${hex(a, b, c, d)}\t00000000\t0001\t0\t0\t0\t${hex(...m)}\t0\t0\t0`);
  }
  const file = join(await dir(), 'route');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

const settings = (root: string, cniBridge: string) => ({
  cniConfDir: join(root, 'net.d'),
  podCidr: '10.88.0.0/16',
  rootDir: join(root, 'root'),
  cniBridge,
});

describe('the default CNI network of one instance (issue #16)', () => {
  it("writes the instance's bridge into the default conflist", async () => {
    const root = await dir();
    const { file, conflist } = await loadNetwork(settings(root, 'icetray-abc123'));
    expect(file).toBe(join(root, 'net.d', DEFAULT_CONFLIST_FILE));
    expect(conflist.plugins[0]?.['bridge']).toBe('icetray-abc123');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(conflist);
  });

  it('moves an unedited default conflist to the instance bridge, keeping its subnet, and leaves an edited one alone', async () => {
    const root = await dir();
    await mkdir(join(root, 'net.d'));
    const file = join(root, 'net.d', DEFAULT_CONFLIST_FILE);
    const old = defaultConflist({ ...settings(root, 'icetray0'), podCidr: '10.77.0.0/24' });
    await writeFile(file, JSON.stringify(old));
    const { conflist } = await loadNetwork(settings(root, 'icetray-abc123'));
    expect(conflist).toEqual(defaultConflist({ ...settings(root, 'icetray-abc123'), podCidr: '10.77.0.0/24' }));
    const edited = { ...old, plugins: [{ ...old.plugins[0], type: 'bridge', mtu: 1400 }, ...old.plugins.slice(1)] };
    await writeFile(file, JSON.stringify(edited));
    expect((await loadNetwork(settings(root, 'icetray-abc123'))).conflist).toEqual(edited);
  });

  it('reads the host routes from /proc/net/route', async () => {
    const file = await routeFile([
      ['eth0', [0, 0, 0, 0], 0],
      ['icetray0', [10, 88, 0, 0], 16],
    ]);
    expect(await readRoutes(file)).toEqual([
      { iface: 'eth0', network: 0, prefix: 0 },
      { iface: 'icetray0', network: ((10 << 24) | (88 << 16)) >>> 0, prefix: 16 },
    ]);
  });

  it.each([
    ['the same subnet on another bridge', ['icetray0', [10, 88, 0, 0], 16], 'icetray0'],
    ['a part of it on a VPN', ['tun0', [10, 88, 5, 0], 24], 'tun0'],
    ['the same subnet on its own bridge', ['icetray-abc123', [10, 88, 0, 0], 16], undefined],
    ['a wider LAN route', ['eth1', [10, 0, 0, 0], 8], undefined],
    ['a neighbouring subnet', ['icetray0', [10, 89, 0, 0], 16], undefined],
  ] as const)('with %s, finds a conflict through %s', async (_what, route, through) => {
    const root = await dir();
    const conflist = defaultConflist(settings(root, 'icetray-abc123'));
    const file = await routeFile([
      ['eth0', [0, 0, 0, 0], 0],
      [route[0], [...route[1]], route[2]],
    ]);
    const conflict = await podCidrConflict(conflist, file);
    if (through === undefined) expect(conflict).toBeUndefined();
    else {
      expect(conflict?.problem).toContain(
        `10.88.0.0/16 of the default CNI network (bridge icetray-abc123) is already routed through ${through}`,
      );
      expect(conflict?.fix).toContain('pod_cidr');
    }
  });
});
