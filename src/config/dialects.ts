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
      // An empty table is a leaf of its own: `[…runtimes.test-handler]` declares a handler.
      if (Object.keys(value).length === 0) leaves.set(path, {});
      else flatten(value as Record<string, unknown>, path, leaves);
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
  [`${CONTAINERD_V2}.cni.bin_dir`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V2}.cni.conf_dir`]: { field: 'cniConfDir', convert: same },
  [`${CONTAINERD_V2}.registry.config_path`]: { field: 'registry', convert: hostsFolder },
  // containerd 2.x keeps the streaming server under the same plugin name as 1.x.
  [`${CONTAINERD_V2}.stream_server_address`]: { field: 'streamServerAddress', convert: same },
  [`${CONTAINERD_V2}.stream_server_port`]: { field: 'streamServerPort', convert: portNumber },
  [`${CONTAINERD_V2}.stream_idle_timeout`]: { field: 'streamIdleTimeout', convert: same },
  [`${CONTAINERD_V3_IMAGES}.pinned_images.sandbox`]: { field: 'pauseImage', convert: same },
  [`${CONTAINERD_V3_RUNTIME}.cni.bin_dir`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V3_RUNTIME}.cni.bin_dirs`]: { field: 'cniBinDirs', convert: list },
  [`${CONTAINERD_V3_RUNTIME}.cni.conf_dir`]: { field: 'cniConfDir', convert: same },
  [`${CONTAINERD_V3_IMAGES}.registry.config_path`]: { field: 'registry', convert: hostsFolder },
};

const SYSTEMD_CGROUP: Mapping = { field: 'cgroupDriver', convert: systemdCgroup };

/**
 * The runtime tables, each naming a CRI runtime handler: containerd's
 * `<cri plugin>.containerd.runtimes.<name>` and CRI-O's `crio.runtime.runtimes.<name>`.
 */
const RUNTIME_TABLES: Record<Dialect, RegExp> = {
  containerd:
    /^(plugins\."io\.containerd\.grpc\.v1\.cri"|plugins\."io\.containerd\.cri\.v1\.runtime")\.containerd\.runtimes\.([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(.+))?$/,
  crio: /^(crio\.runtime)\.runtimes\.([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(.+))?$/,
};

/**
 * The runtime_type of a runtime icetray can stand in for: runc's shim (containerd's default) and
 * CRI-O's "oci". A VM runtime (kata's `io.containerd.kata.v2`, CRI-O's "vm") promises an
 * isolation nsexec does not give, so such a handler is left out and its pods are refused.
 */
const RUNC_LIKE: Record<Dialect, readonly unknown[]> = {
  containerd: [undefined, 'io.containerd.runc.v2'],
  crio: [undefined, 'oci'],
};

/** The key naming the runtime the default handler "" stands for. */
const DEFAULT_RUNTIME: Record<Dialect, RegExp> = {
  containerd: /^plugins\."io\.containerd\.(grpc\.v1\.cri|cri\.v1\.runtime)"\.containerd\.default_runtime_name$/,
  crio: /^crio\.runtime\.default_runtime$/,
};

/** A RuntimeClass handler must be a DNS label (RFC 1123), as the Kubernetes API checks it. */
const HANDLER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

interface RuntimeTable {
  /** The table's key, for messages. */
  path: string;
  type: unknown;
}

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
  const apply = (path: string, value: unknown, mapping: Mapping): void => {
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
  };
  const runtimes = new Map<string, RuntimeTable>();
  const defaults: [string, unknown][] = [];
  for (const [path, value] of leaves) {
    const runtime = RUNTIME_TABLES[dialect].exec(path);
    if (runtime !== null) {
      const [, plugin = '', quoted = '', rest] = runtime;
      const name = quoted.startsWith('"') ? (JSON.parse(quoted) as string) : quoted;
      const table = runtimes.get(name) ?? {
        path: `${plugin}.${dialect === 'crio' ? 'runtimes' : 'containerd.runtimes'}.${quoted}`,
        type: undefined,
      };
      runtimes.set(name, table);
      if (rest === undefined) continue; // an empty table: the handler, nothing more
      if (rest === 'runtime_type') table.type = value;
      else if (dialect === 'containerd' && rest === 'options.SystemdCgroup') apply(path, value, SYSTEMD_CGROUP);
      else result.warnings.push(`${dialect} key "${path}" is not honoured by icetray and has no effect`);
      continue;
    }
    if (DEFAULT_RUNTIME[dialect].test(path)) {
      defaults.push([path, value]);
      continue;
    }
    const mapping = mappings[path];
    if (mapping === undefined) {
      if (dialect === 'containerd' && CONTAINERD_HARMLESS.has(path)) continue;
      if (dialect === 'crio' && path === 'crio.runtime.conmon_cgroup') continue;
      // An empty table sets nothing.
      if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0) continue;
      result.warnings.push(`${dialect} key "${path}" is not honoured by icetray and has no effect`);
      continue;
    }
    apply(path, value, mapping);
  }
  readRuntimes(dialect, runtimes, defaults, result);
  if (dialect === 'crio') checkConmonCgroup(leaves, result);
  return result;
}

/**
 * Each runtime table becomes a runtime handler of that name, an alias of icetray's one runtime
 * (nsexec), when its runtime_type is runc's; any other is left out with a warning, so a pod
 * asking for VM isolation is refused rather than run without it.
 */
function readRuntimes(
  dialect: Dialect,
  runtimes: Map<string, RuntimeTable>,
  defaults: [string, unknown][],
  result: DialectSettings,
): void {
  const handlers: string[] = [];
  for (const [name, table] of runtimes) {
    if (!HANDLER_NAME.test(name)) {
      result.warnings.push(
        `${dialect} runtime ${JSON.stringify(name)} (${table.path}) cannot be a RuntimeClass handler: not a DNS label`,
      );
    } else if (!RUNC_LIKE[dialect].includes(table.type)) {
      result.warnings.push(
        `${dialect} runtime "${name}" has runtime_type ${JSON.stringify(table.type)}: icetray's one runtime, nsexec, stands in for runc only, so pods asking for "${name}" are refused`,
      );
    } else {
      handlers.push(name);
      result.keys.runtimeHandlers ??= table.path;
    }
  }
  if (handlers.length > 0) result.settings.runtimeHandlers = ['', ...handlers];
  for (const [path, value] of defaults) {
    if (typeof value === 'string' && handlers.includes(value)) continue;
    result.warnings.push(
      `${dialect} key "${path}" = ${JSON.stringify(value)} has no effect: icetray's default handler "" is its nsexec runtime`,
    );
  }
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
