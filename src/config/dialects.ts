import type { Config } from './config.js';

/**
 * The config spellings of the real runtimes, mapped onto icetray's settings, so a learner's
 * containerd or CRI-O knowledge works here: `SystemdCgroup = true`, `sandbox_image`,
 * `[crio.runtime] cgroup_manager`, … Keys icetray cannot honour are named in warnings,
 * never dropped silently.
 */
export type Dialect = 'containerd' | 'crio';

/** A leaf of a TOML table, by its dotted path as the runtime's docs write it. */
type Leaves = Map<string, unknown>;

/** Quotes a TOML key segment that is not a bare key (`"io.containerd.grpc.v1.cri"`). */
function segment(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

export function flatten(table: Record<string, unknown>, prefix = '', leaves: Leaves = new Map()): Leaves {
  for (const [key, value] of Object.entries(table)) {
    const path = prefix === '' ? segment(key) : `${prefix}.${segment(key)}`;
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)) {
      flatten(value as Record<string, unknown>, path, leaves);
    } else {
      leaves.set(path, value);
    }
  }
  return leaves;
}

export interface Mapping {
  field: keyof Config;
  /** Turns the runtime's value into icetray's; throws a message for a value that cannot map. */
  convert: (value: unknown) => unknown;
}

const same = (value: unknown): unknown => value;
const list = (value: unknown): unknown => (typeof value === 'string' ? [value] : value);
const systemdCgroup = (value: unknown): unknown => {
  if (typeof value !== 'boolean') throw new Error('expected true or false');
  return value ? 'systemd' : 'cgroupfs';
};
const hostsFolder = (value: unknown): unknown => ({ mirrors: {}, config_path: value });
const unixAddress = (value: unknown): unknown => (typeof value === 'string' ? value.replace(/^unix:\/\//, '') : value);
/** Both runtimes write the streaming port as a string ("0"). */
const portNumber = (value: unknown): unknown => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value);
/** CRI-O's empty stream_idle_timeout means no timeout. */
const idleTimeout = (value: unknown): unknown => (value === '' ? '0' : value);

const CONTAINERD_V2 = 'plugins."io.containerd.grpc.v1.cri"';
const CONTAINERD_V3_RUNTIME = 'plugins."io.containerd.cri.v1.runtime"';
const CONTAINERD_V3_IMAGES = 'plugins."io.containerd.cri.v1.images"';

/** containerd 1.x (config version 2) and 2.x (version 3) keys icetray honours. */
const CONTAINERD: Record<string, Mapping> = {
  'grpc.address': { field: 'socket', convert: unixAddress },
  [`${CONTAINERD_V2}.sandbox_image`]: { field: 'pauseImage', convert: same },
  [`${CONTAINERD_V2}.containerd.runtimes.runc.options.SystemdCgroup`]: { field: 'cgroupDriver', convert: systemdCgroup },
  [`${CONTAINERD_V2}.cni.bin_dir`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V2}.cni.conf_dir`]: { field: 'cniConfDir', convert: same },
  [`${CONTAINERD_V2}.registry.config_path`]: { field: 'registry', convert: hostsFolder },
  // containerd 2.x keeps the streaming server under the same plugin name as 1.x.
  [`${CONTAINERD_V2}.stream_server_address`]: { field: 'streamServerAddress', convert: same },
  [`${CONTAINERD_V2}.stream_server_port`]: { field: 'streamServerPort', convert: portNumber },
  [`${CONTAINERD_V2}.stream_idle_timeout`]: { field: 'streamIdleTimeout', convert: same },
  [`${CONTAINERD_V3_IMAGES}.pinned_images.sandbox`]: { field: 'pauseImage', convert: same },
  [`${CONTAINERD_V3_RUNTIME}.containerd.runtimes.runc.options.SystemdCgroup`]: { field: 'cgroupDriver', convert: systemdCgroup },
  [`${CONTAINERD_V3_RUNTIME}.cni.bin_dir`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V3_RUNTIME}.cni.bin_dirs`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V3_RUNTIME}.cni.conf_dir`]: { field: 'cniConfDir', convert: same },
  [`${CONTAINERD_V3_IMAGES}.registry.config_path`]: { field: 'registry', convert: hostsFolder },
};

/** Keys that say what the file is rather than set anything. */
const CONTAINERD_HARMLESS = new Set(['version']);

/**
 * CRI-O keeps a conmon per container in `conmon_cgroup`; icetray has no conmon, so the key
 * is only checked the way CRI-O checks it: with cgroupfs it must be "pod".
 */
const CRIO: Record<string, Mapping> = {
  'crio.api.listen': { field: 'socket', convert: unixAddress },
  'crio.image.pause_image': { field: 'pauseImage', convert: same },
  'crio.runtime.cgroup_manager': { field: 'cgroupDriver', convert: same },
  'crio.network.network_dir': { field: 'cniConfDir', convert: same },
  'crio.network.plugin_dirs': { field: 'cniBinDirs', convert: list },
  'crio.api.stream_address': { field: 'streamServerAddress', convert: same },
  'crio.api.stream_port': { field: 'streamServerPort', convert: portNumber },
  'crio.api.stream_idle_timeout': { field: 'streamIdleTimeout', convert: idleTimeout },
};

export interface DialectSettings {
  settings: Partial<Record<keyof Config, unknown>>;
  /** The runtime key each setting came from. */
  keys: Partial<Record<keyof Config, string>>;
  warnings: string[];
}

/** Reads the keys of one runtime's dialect from a (flattened) table; the rest become warnings. */
export function readDialect(dialect: Dialect, leaves: Leaves): DialectSettings {
  const mappings = dialect === 'containerd' ? CONTAINERD : CRIO;
  const result: DialectSettings = { settings: {}, keys: {}, warnings: [] };
  for (const [path, value] of leaves) {
    const mapping = mappings[path];
    if (mapping === undefined) {
      if (dialect === 'containerd' && CONTAINERD_HARMLESS.has(path)) continue;
      if (dialect === 'crio' && path === 'crio.runtime.conmon_cgroup') continue;
      result.warnings.push(`${dialect} key "${path}" is not honoured by icetray and has no effect`);
      continue;
    }
    let converted: unknown;
    try {
      converted = mapping.convert(value);
    } catch (err) {
      throw new Error(`${dialect} key "${path}": ${(err as Error).message}, got ${JSON.stringify(value)}`, { cause: err });
    }
    const earlier = result.keys[mapping.field];
    if (earlier !== undefined && JSON.stringify(result.settings[mapping.field]) !== JSON.stringify(converted)) {
      throw new Error(`${dialect} keys "${earlier}" and "${path}" disagree`);
    }
    result.settings[mapping.field] = converted;
    result.keys[mapping.field] = path;
  }
  if (dialect === 'crio') checkConmonCgroup(leaves, result);
  return result;
}

function checkConmonCgroup(leaves: Leaves, result: DialectSettings): void {
  const conmon = leaves.get('crio.runtime.conmon_cgroup');
  if (conmon === undefined) return;
  const manager = result.settings.cgroupDriver ?? 'systemd'; // CRI-O's default manager
  if (manager === 'cgroupfs' && conmon !== 'pod') {
    throw new Error(
      `crio key "crio.runtime.conmon_cgroup" must be "pod" with cgroup_manager = "cgroupfs" (CRI-O's rule), got ${JSON.stringify(conmon)}`,
    );
  }
  result.warnings.push('crio key "crio.runtime.conmon_cgroup" was checked but has no effect: icetray runs no conmon');
}
