import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { log } from '../log.js';

/**
 * The pod network, as containerd and CRI-O do it: icetray does not make interfaces itself, it
 * runs the standard CNI plugins (bridge, host-local, portmap, loopback) against the pod's netns.
 */

/** The name of the file icetray writes into an empty CNI config dir. */
export const DEFAULT_CONFLIST_FILE = '10-icetray.conflist';
export const DEFAULT_BRIDGE = 'icetray0';

/** A CNI network config list, as far as icetray reads it. */
export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: { type: string; [key: string]: unknown }[];
}

/** The default network: a bridge with the node as gateway, host-local addresses, hostPorts by portmap. */
export function defaultConflist(config: Pick<Config, 'podCidr' | 'rootDir'>): Conflist {
  return {
    cniVersion: '1.0.0',
    name: 'icetray',
    plugins: [
      {
        type: 'bridge',
        bridge: DEFAULT_BRIDGE,
        // isGateway gives the bridge the range's first address, so pods have a default route
        // (and the bridge plugin turns net.ipv4.ip_forward on).
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: config.podCidr }]],
          routes: [{ dst: '0.0.0.0/0' }],
          // Leases live under icetray's root, so removal can be checked to leave none behind.
          dataDir: join(config.rootDir, 'cni', 'networks'),
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/** The network icetray will use: the first config file in the dir, in name order (libcni's rule). */
export interface NetworkChoice {
  file: string;
  conflist: Conflist;
}

/** Writes the default conflist when the config dir has no network config; returns the chosen one. */
export async function loadNetwork(config: Pick<Config, 'cniConfDir' | 'podCidr' | 'rootDir'>): Promise<NetworkChoice> {
  await mkdir(config.cniConfDir, { recursive: true });
  const names = (await readdir(config.cniConfDir)).filter((name) => /\.(conflist|conf|json)$/.test(name)).sort();
  const first = names[0];
  if (first === undefined) {
    const file = join(config.cniConfDir, DEFAULT_CONFLIST_FILE);
    const conflist = defaultConflist(config);
    await writeFile(file, `${JSON.stringify(conflist, null, 2)}\n`);
    log.info({ file, podCidr: config.podCidr }, 'wrote the default CNI network config');
    return { file, conflist };
  }
  const file = join(config.cniConfDir, first);
  const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<Conflist> & { type?: string };
  // A single-plugin .conf is a list of one.
  const conflist: Conflist =
    parsed.plugins !== undefined
      ? (parsed as Conflist)
      : {
          cniVersion: parsed.cniVersion ?? '0.4.0',
          name: parsed.name ?? first,
          plugins: [parsed as Conflist['plugins'][number]],
        };
  return { file, conflist };
}

/** Finds a plugin binary in the bin dirs, in order. */
export async function findPlugin(binDirs: readonly string[], type: string): Promise<string | undefined> {
  for (const dir of binDirs) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this dir: try the next
    }
  }
  return undefined;
}

/** The plugins a network needs, plus `loopback` (every pod gets `lo` up), that are not installed. */
export async function missingPlugins(binDirs: readonly string[], conflist: Conflist): Promise<string[]> {
  const needed = new Set(['loopback', ...conflist.plugins.map((plugin) => plugin.type)]);
  const missing: string[] = [];
  for (const type of needed) if ((await findPlugin(binDirs, type)) === undefined) missing.push(type);
  return missing;
}

const IP_FORWARD = 'net/ipv4/ip_forward';

/** The command a learner runs to turn forwarding on, now and after reboot. */
export const IP_FORWARD_FIX =
  "sysctl -w net.ipv4.ip_forward=1 && echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/k8s.conf && sysctl --system";

export async function readIpForward(procSys = '/proc/sys'): Promise<boolean> {
  return (await readFile(join(procSys, IP_FORWARD), 'utf8')).trim() === '1';
}

/**
 * Pods reach each other through the node only if the node routes between interfaces:
 * kubeadm's preflight requires net.ipv4.ip_forward = 1. With `enable_ip_forward` icetray turns
 * it on (and says so); without it, NetworkReady stays false until the admin does.
 */
export async function ensureIpForward(enable: boolean, procSys = '/proc/sys'): Promise<boolean> {
  if (await readIpForward(procSys)) return true;
  if (!enable) return false;
  await writeFile(join(procSys, IP_FORWARD), '1\n');
  log.warn('net.ipv4.ip_forward was 0: turned it on (enable_ip_forward = true)');
  return true;
}

/** The CRI NetworkReady condition, with a reason and the fix when it is false. */
export interface Readiness {
  ready: boolean;
  reason: string;
  message: string;
}

export async function networkReadiness(
  config: Pick<Config, 'cniConfDir' | 'cniBinDirs' | 'podCidr' | 'rootDir'>,
  procSys = '/proc/sys',
): Promise<Readiness> {
  const { file, conflist } = await loadNetwork(config);
  const missing = await missingPlugins(config.cniBinDirs, conflist);
  if (missing.length > 0) {
    return {
      ready: false,
      reason: 'NetworkPluginNotReady',
      message:
        `CNI plugins ${missing.join(', ')} (needed by ${file}) not found in ${config.cniBinDirs.join(', ')}: ` +
        'pods get a private network namespace with loopback only. Fix: apt-get install containernetworking-plugins',
    };
  }
  if (!(await readIpForward(procSys))) {
    return {
      ready: false,
      reason: 'IPForwardingDisabled',
      message: `net.ipv4.ip_forward is 0, so pod traffic cannot be routed. Fix: ${IP_FORWARD_FIX}`,
    };
  }
  return { ready: true, reason: '', message: '' };
}
