import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import type { Config } from '../config/config.js';
import { FailedPreconditionError, UnavailableError } from '../errors.js';
import { log } from '../log.js';
import { CommandError, run } from '../os/exec.js';
import { isNamespaceFile } from '../os/proc-stat.js';

/**
 * The pod network, as containerd and CRI-O do it: icetray does not make interfaces itself, it
 * runs the standard CNI plugins (bridge, host-local, portmap, loopback) against the pod's netns.
 */

/** The name of the file icetray writes into an empty CNI config dir. */
export const DEFAULT_CONFLIST_FILE = '10-icetray.conflist';

/** The settings icetray's default network is made from. */
type NetworkSettings = Pick<Config, 'cniConfDir' | 'podCidr' | 'rootDir' | 'cniBridge'>;

/** A CNI network config list, as far as icetray reads it. */
export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: { type: string; [key: string]: unknown }[];
}

/**
 * The default network: a bridge with the node as gateway, host-local addresses, hostPorts by
 * portmap. The bridge is the instance's own (`cni_bridge`: icetray0 for the default root dir),
 * so a second icetray on the host does not plug its pods into the first one's bridge.
 */
export function defaultConflist(config: Pick<Config, 'podCidr' | 'rootDir' | 'cniBridge'>): Conflist {
  return {
    cniVersion: '1.0.0',
    name: 'icetray',
    plugins: [
      {
        type: 'bridge',
        bridge: config.cniBridge,
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

export interface PodNetwork {
  /** The conflist's network name ('' when the pod got loopback only: no CNI plugins). */
  name: string;
  ip: string;
  additionalIps: string[];
  /** The last plugin's CNI result, kept for DEL's prevResult and for `inspectp`. */
  result: unknown;
  /**
   * The network config ADD used, kept with the pod as libcni caches it: CHECK and DEL use this
   * one, so an edited or removed conflist cannot strand a pod's address. Undefined only in
   * records of an older icetray.
   */
  conflist?: Conflist | undefined;
}

/** The network icetray will use: the first config file in the dir, in name order (libcni's rule). */
export interface NetworkChoice {
  file: string;
  conflist: Conflist;
}

/** The bridge and subnet of icetray's default network as written (its subnet may be the kubelet's). */
function defaultNetworkOf(conflist: Conflist): { bridge: string; subnet: string } | undefined {
  const [bridge] = conflist.plugins;
  const ipam = bridge?.['ipam'] as { ranges?: { subnet?: unknown }[][] } | undefined;
  const subnet = ipam?.ranges?.[0]?.[0]?.subnet;
  if (bridge?.type !== 'bridge' || typeof bridge['bridge'] !== 'string' || typeof subnet !== 'string') return undefined;
  return { bridge: bridge['bridge'], subnet };
}

/**
 * Writes the default conflist when the config dir has no network config; returns the chosen one.
 * icetray's own default, as icetray wrote it, is rewritten when it names another bridge than the
 * instance's (written before `cni_bridge` existed, or with another one), keeping its subnet; one
 * an admin edited is left alone. Pods on the old bridge keep the conflist their ADD used
 * (PodNetwork.conflist) until they go.
 */
export async function loadNetwork(config: NetworkSettings): Promise<NetworkChoice> {
  await mkdir(config.cniConfDir, { recursive: true });
  const names = (await readdir(config.cniConfDir)).filter((name) => /\.(conflist|conf|json)$/.test(name)).sort();
  const first = names[0];
  if (first === undefined) {
    const file = join(config.cniConfDir, DEFAULT_CONFLIST_FILE);
    const conflist = defaultConflist(config);
    await writeFile(file, `${JSON.stringify(conflist, null, 2)}\n`);
    log.info({ file, podCidr: config.podCidr, bridge: config.cniBridge }, 'wrote the default CNI network config');
    return { file, conflist };
  }
  const file = join(config.cniConfDir, first);
  const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<Conflist> & { type?: string };
  const written =
    first === DEFAULT_CONFLIST_FILE && parsed.plugins !== undefined ? defaultNetworkOf(parsed as Conflist) : undefined;
  const unedited =
    written !== undefined &&
    JSON.stringify(parsed) === JSON.stringify(defaultConflist({ ...config, podCidr: written.subnet, cniBridge: written.bridge }));
  if (written !== undefined && unedited && written.bridge !== config.cniBridge) {
    const conflist = defaultConflist({ ...config, podCidr: written.subnet });
    await writeFile(file, `${JSON.stringify(conflist, null, 2)}\n`);
    log.info({ file, from: written.bridge, bridge: config.cniBridge }, "the default CNI network now uses this instance's bridge");
    return { file, conflist };
  }
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

/**
 * Puts a new pod CIDR in force, as the kubelet hands it over (UpdateRuntimeConfig). Only
 * icetray's own default conflist is rewritten; a network config the admin wrote is theirs and
 * stays as it is. Pods created from now on get addresses from the new range.
 */
export async function applyPodCidr(config: NetworkSettings, podCidr: string): Promise<{ file: string; rewritten: boolean }> {
  const { file } = await loadNetwork(config);
  if (basename(file) !== DEFAULT_CONFLIST_FILE) {
    log.info({ file, podCidr }, "pod CIDR from the kubelet not applied: the network config in force is not icetray's default");
    return { file, rewritten: false };
  }
  await writeFile(file, `${JSON.stringify(defaultConflist({ ...config, podCidr }), null, 2)}\n`);
  log.info({ file, podCidr }, 'pod CIDR from the kubelet written into the default CNI network');
  return { file, rewritten: true };
}

/** A route of the host's main table, as /proc/net/route lists it. */
export interface HostRoute {
  iface: string;
  /** The destination network, as a 32-bit number. */
  network: number;
  prefix: number;
}

/** The host's IPv4 routes. /proc/net/route prints each address as the kernel holds it in memory. */
export async function readRoutes(file = '/proc/net/route'): Promise<HostRoute[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const toNumber = (hex: string): number => {
    const bytes = Buffer.alloc(4);
    if (endianness() === 'LE') bytes.writeUInt32LE(Number.parseInt(hex, 16));
    else bytes.writeUInt32BE(Number.parseInt(hex, 16));
    return bytes.readUInt32BE(0);
  };
  const routes: HostRoute[] = [];
  for (const line of text.split('\n').slice(1)) {
    const [iface, destination, , , , , , mask] = line.trim().split(/\s+/);
    if (iface === undefined || destination === undefined || mask === undefined) continue;
    const bits = toNumber(mask).toString(2).replace(/0/g, '').length;
    routes.push({ iface, network: toNumber(destination), prefix: bits });
  }
  return routes;
}

function parseCidr(cidr: string): { network: number; prefix: number } | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (match === null) return undefined;
  const [a, b, c, d] = match.slice(1, 5).map(Number) as [number, number, number, number];
  return { network: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0, prefix: Number(match[5]) };
}

const maskOf = (prefix: number): number => (prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0);

/**
 * Whether the pods of icetray's default network would be routed elsewhere: a route of the host
 * to the pod subnet, or to a part of it, through another interface than the instance's bridge
 * (another icetray's bridge with the same subnet, a VPN, a LAN). Then the kernel sends some pod
 * traffic to that interface: a second icetray with the default pod_cidr and its own bridge is
 * refused, clearly, instead of routing wrong. Less specific routes (the default route, a /8 of a
 * LAN) do not count: the pod subnet's own route is more specific and wins.
 */
export async function podCidrConflict(conflist: Conflist, routeFile?: string): Promise<PodCidrConflict | undefined> {
  const written = defaultNetworkOf(conflist);
  const ours = written === undefined ? undefined : parseCidr(written.subnet);
  if (written === undefined || ours === undefined) return undefined;
  const mask = maskOf(ours.prefix);
  const clash = (await readRoutes(routeFile)).find(
    (route) =>
      route.iface !== written.bridge &&
      route.prefix >= ours.prefix &&
      (route.network & mask) >>> 0 === (ours.network & mask) >>> 0,
  );
  if (clash === undefined) return undefined;
  return {
    problem:
      `the pod subnet ${written.subnet} of the default CNI network (bridge ${written.bridge}) is already routed through ` +
      `${clash.iface} (another icetray's bridge, or another network of this host), so pod traffic would go there`,
    fix:
      'give this icetray a free range with pod_cidr in its config, and remove the network config it wrote ' +
      `(${DEFAULT_CONFLIST_FILE} in cni_conf_dir) so that it is written again`,
  };
}

/** A pod subnet routed elsewhere (podCidrConflict), with its fix. */
export interface PodCidrConflict {
  problem: string;
  fix: string;
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
  config: NetworkSettings & Pick<Config, 'cniBinDirs'>,
  procSys = '/proc/sys',
): Promise<Readiness> {
  const { file, conflist } = await loadNetwork(config);
  const conflict = basename(file) === DEFAULT_CONFLIST_FILE ? await podCidrConflict(conflist) : undefined;
  if (conflict !== undefined)
    return { ready: false, reason: 'PodCidrInUse', message: `${conflict.problem}. Fix: ${conflict.fix}` };
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

/** What a CNI call needs to know about the pod (CNI spec: environment and CNI_ARGS). */
export interface PodAttachment {
  sandboxId: string;
  netns: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  /** CNI `portMappings` capability (hostPort → containerPort), from PodSandboxConfig.port_mappings. */
  portMappings: { hostPort: number; containerPort: number; protocol: string; hostIP: string }[];
}

/**
 * portmap up to CNI plugins 1.2 (Debian bookworm ships 1.1.1) also checks IPv6 rules for a pod
 * that has no IPv6 address, and so fails CHECK on any host with ip6tables
 * (containernetworking/plugins#819). It checked the IPv4 rules first: that failure is not the pod's.
 */
function portmapIpv6CheckBug(plugin: { type?: unknown }, network: PodNetwork, err: unknown): boolean {
  const hasIpv6 = [network.ip, ...network.additionalIps].some((ip) => ip.includes(':'));
  return plugin.type === 'portmap' && !hasIpv6 && err instanceof Error && err.message.includes('could not check ipv6 dnat');
}

/** Sets a pod's network up and down through CNI ADD/CHECK/DEL. */
export interface PodNetworkManager {
  /** The network a new pod joins: the config in force, or undefined when its plugins are missing (loopback only). */
  choose(): Promise<Conflist | undefined>;
  /** `lo` up, then CNI ADD of `conflist`; when ADD fails, DEL of whatever it did, then the error. */
  setUp(pod: PodAttachment, conflist: Conflist | undefined): Promise<PodNetwork>;
  check(pod: PodAttachment, network: PodNetwork): Promise<void>;
  /**
   * CNI DEL of every plugin, in reverse order, each one tried even when one before it failed,
   * so that a plugin refusing DEL (portmap with a bad mapping) cannot keep bridge and IPAM
   * from releasing the veth and the address. The first failure is thrown after all ran.
   */
  tearDown(pod: PodAttachment, network: PodNetwork | undefined): Promise<void>;
}

const POD_IFNAME = 'eth0';

interface CniError {
  code?: number;
  msg?: string;
  details?: string;
}

interface CniResult {
  ips?: { address: string }[];
}

type CniCommand = 'ADD' | 'CHECK' | 'DEL';

/**
 * Runs one plugin as the CNI spec says: the command and pod in the environment, the network
 * config (with the previous plugin's result) on stdin, the result or an error as JSON on stdout.
 */
async function execPlugin(
  config: Pick<Config, 'cniBinDirs'>,
  command: CniCommand,
  pod: PodAttachment,
  ifname: string,
  netconf: Record<string, unknown>,
): Promise<unknown> {
  const type = String(netconf['type']);
  const binary = await findPlugin(config.cniBinDirs, type);
  if (binary === undefined) throw new UnavailableError(`CNI plugin "${type}" not found in ${config.cniBinDirs.join(', ')}`);
  const env = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.sandboxId,
    CNI_NETNS: pod.netns,
    CNI_IFNAME: ifname,
    CNI_PATH: config.cniBinDirs.join(':'),
    // The kubelet's CNI_ARGS, which plugins such as portmap and IPAMs may read.
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.podNamespace};K8S_POD_NAME=${pod.podName};K8S_POD_INFRA_CONTAINER_ID=${pod.sandboxId};K8S_POD_UID=${pod.podUid}`,
  };
  try {
    const { stdout } = await run(binary, [], { input: JSON.stringify(netconf), env, timeoutMs: 60_000 });
    return stdout.trim() === '' ? undefined : (JSON.parse(stdout) as unknown);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    let detail = err.stderr.trim();
    try {
      const parsed = JSON.parse(err.stdout) as CniError;
      detail = [parsed.msg, parsed.details].filter(Boolean).join(': ') || detail;
    } catch {
      // not a CNI error object: keep stderr
    }
    throw new UnavailableError(`CNI ${command} of plugin "${type}" failed for sandbox "${pod.sandboxId}": ${detail}`, {
      cause: err,
    });
  }
}

/** The config one plugin of a list gets: the list's name and version, prevResult, runtimeConfig. */
function pluginConf(
  list: Conflist,
  plugin: Conflist['plugins'][number],
  pod: PodAttachment,
  prevResult: unknown,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf['prevResult'] = prevResult;
  const capabilities = (plugin['capabilities'] ?? {}) as Record<string, boolean>;
  if (capabilities['portMappings'] === true && pod.portMappings.length > 0) {
    conf['runtimeConfig'] = { portMappings: pod.portMappings };
  }
  return conf;
}

const LOOPBACK: Conflist = { cniVersion: '1.0.0', name: 'cni-loopback', plugins: [{ type: 'loopback' }] };

/** Brings `lo` up in the pod's netns: with the loopback plugin, or `ip` when it is missing. */
async function loopbackUp(config: Pick<Config, 'cniBinDirs'>, pod: PodAttachment): Promise<void> {
  const [plugin] = LOOPBACK.plugins;
  if (plugin !== undefined && (await findPlugin(config.cniBinDirs, 'loopback')) !== undefined) {
    await execPlugin(config, 'ADD', pod, 'lo', pluginConf(LOOPBACK, plugin, pod, undefined));
    return;
  }
  await run('nsenter', [`--net=${pod.netns}`, 'ip', 'link', 'set', 'lo', 'up']);
}

function podIps(result: unknown): { ip: string; additionalIps: string[] } {
  const addresses = ((result as CniResult | undefined)?.ips ?? []).map((entry) => entry.address.split('/')[0] ?? '');
  // The kubelet takes `ip` as the primary address: IPv4 first, as dual-stack clusters expect.
  const sorted = [...addresses.filter((a) => !a.includes(':')), ...addresses.filter((a) => a.includes(':'))];
  return { ip: sorted[0] ?? '', additionalIps: sorted.slice(1) };
}

export function cniNetworkManager(config: NetworkSettings & Pick<Config, 'cniBinDirs'>): PodNetworkManager {
  const inForce = async (network: PodNetwork): Promise<Conflist> => network.conflist ?? (await loadNetwork(config)).conflist;
  return {
    async choose() {
      const { file, conflist } = await loadNetwork(config);
      // Checked before anything of the pod is made: refused, never given an address routed elsewhere.
      const conflict = basename(file) === DEFAULT_CONFLIST_FILE ? await podCidrConflict(conflist) : undefined;
      if (conflict !== undefined) throw new FailedPreconditionError(`${conflict.problem}. Fix: ${conflict.fix}`);
      if ((await missingPlugins(config.cniBinDirs, conflist)).length === 0) return conflist;
      // The degraded mode the Status condition explains: a private netns with loopback only.
      log.warn('CNI plugins missing: new pods get loopback only');
      return undefined;
    },

    async setUp(pod, conflist) {
      await loopbackUp(config, pod);
      if (conflist === undefined) return { name: '', ip: '', additionalIps: [], result: undefined };
      let result: unknown;
      try {
        for (const plugin of conflist.plugins) {
          result = await execPlugin(config, 'ADD', pod, POD_IFNAME, pluginConf(conflist, plugin, pod, result));
        }
      } catch (err) {
        // CNI spec: after a failed ADD the runtime calls DEL, so plugins release what they took.
        await this.tearDown(pod, { name: conflist.name, ip: '', additionalIps: [], result, conflist }).catch((delErr: unknown) =>
          log.error({ err: delErr, podSandboxId: pod.sandboxId }, 'CNI DEL after a failed ADD failed'),
        );
        throw err;
      }
      return { name: conflist.name, ...podIps(result), result, conflist };
    },

    async check(pod, network) {
      if (network.name === '') return;
      const conflist = await inForce(network);
      for (const plugin of conflist.plugins) {
        await execPlugin(config, 'CHECK', pod, POD_IFNAME, pluginConf(conflist, plugin, pod, network.result)).catch(
          (err: unknown) => {
            if (!portmapIpv6CheckBug(plugin, network, err)) throw err;
          },
        );
      }
    },

    async tearDown(pod, network) {
      if (network === undefined || network.name === '') return;
      const conflist = await inForce(network);
      // CNI spec: DEL may come when the netns is gone already (pause died, a crash undone): then
      // CNI_NETNS is empty and the plugins release what is theirs outside it (the address, rules).
      const target = { ...pod, netns: isNamespaceFile(pod.netns) ? pod.netns : '' };
      let failure: Error | undefined;
      for (const plugin of [...conflist.plugins].reverse()) {
        await execPlugin(config, 'DEL', target, POD_IFNAME, pluginConf(conflist, plugin, target, network.result)).catch(
          (err: unknown) => (failure ??= err instanceof Error ? err : new Error(String(err))),
        );
      }
      if (failure !== undefined) throw failure;
    },
  };
}
