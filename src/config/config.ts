import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseTomlText } from 'smol-toml';
import { InvalidArgumentError, messageOf } from '../errors.js';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import { flatten, readDialect, type Dialect } from './dialects.js';
import { parseDuration } from './duration.js';
import { DEFAULT_REGISTRY_CONFIG, parseRegistryConfig, type RegistryConfig } from '../images/registry-config.js';

/** The cgroup drivers icetray implements (the kubelet's `cgroupDriver` values). */
export const CGROUP_DRIVERS = ['cgroupfs', 'systemd'] as const;
export type CgroupDriverName = (typeof CGROUP_DRIVERS)[number];

/** Everything icetray reads from its config file, after defaults and flags are applied. */
export interface Config {
  /** The CRI Unix socket (`runtime-endpoint: unix://<socket>` in crictl.yaml). */
  socket: string;
  /** Persistent state: pods, containers, images (containerd's `root`). */
  rootDir: string;
  /** Volatile state that a reboot may lose: pinned namespaces, the socket's folder (containerd's `state`). */
  stateDir: string;
  /** The image that names the pause container (the "sandbox image"). */
  pauseImage: string;
  cgroupDriver: CgroupDriverName;
  /** The pod address range of the default CNI network. */
  podCidr: string;
  /**
   * The bridge of the default CNI network: `icetray0` for the default root dir, else a name
   * derived from the root dir (`defaultBridge`), so two icetrays on one host never share one.
   */
  cniBridge: string;
  /** Where CNI network configs are read from; icetray writes its default conflist here when it is empty. */
  cniConfDir: string;
  /** Where CNI plugin binaries are looked for, in order. */
  cniBinDirs: string[];
  /** Turn `net.ipv4.ip_forward` on at start when it is off, instead of only reporting it. */
  enableIpForward: boolean;
  logLevel: LogLevel;
  /** Registry mirrors and hosts.toml folder, as containerd configures them. */
  registry: RegistryConfig;
  /** Where the exec/attach/port-forward streaming server listens (containerd's key names). */
  streamServerAddress: string;
  /** Its port; 0 picks a free one. */
  streamServerPort: number;
  /** A stream with no traffic for this long is closed (a Go duration; "0" never). */
  streamIdleTimeout: string;
  /**
   * The CRI runtime handlers RunPodSandbox accepts (a RuntimeClass's `handler`), the default ""
   * first. icetray has one low-level runtime, nsexec, so every handler is a named alias of the
   * default with the same features: a name a cluster's RuntimeClass can point at, such as the
   * node e2e suite's `test-handler` — not a different isolation.
   */
  runtimeHandlers: string[];
}

/** Where a value in force came from, for `Status` verbose info and `icetray config show`. */
export type Source = 'default' | 'file' | 'flag' | 'flavor';

export interface LoadedConfig {
  config: Config;
  /** The config file read, or undefined when none was found at the default path. */
  file: string | undefined;
  sources: Record<keyof Config, Source>;
  /** Where exactly each value came from: the file and key, the flag, or "default". */
  origins: Record<keyof Config, string>;
  /** Keys of a real runtime's config that icetray read but cannot honour. */
  warnings: string[];
}

export const DEFAULT_CONFIG_FILE = '/etc/icetray/config.toml';

export const DEFAULTS: Config = {
  socket: '/run/icetray/icetray.sock',
  rootDir: '/var/lib/icetray',
  stateDir: '/run/icetray',
  // The pause image of Kubernetes 1.31+, as kubeadm configures it.
  pauseImage: 'registry.k8s.io/pause:3.10',
  // containerd's default (SystemdCgroup = false); systemd needs systemd as PID 1.
  cgroupDriver: 'cgroupfs',
  // The range containerd's and CRI-O's example bridge configs use.
  podCidr: '10.88.0.0/16',
  // For the default root dir; any other gets its own (loadConfig, defaultBridge).
  cniBridge: 'icetray0',
  cniConfDir: '/etc/icetray/cni/net.d',
  // Debian's containernetworking-plugins, then the upstream tarball's usual place.
  cniBinDirs: ['/usr/lib/cni', '/opt/cni/bin'],
  enableIpForward: true,
  logLevel: 'info',
  registry: DEFAULT_REGISTRY_CONFIG,
  // Loopback only: the URLs the Exec/Attach/PortForward RPCs hand out are for local clients.
  streamServerAddress: '127.0.0.1',
  streamServerPort: 0,
  // The kubelet's and containerd's default.
  streamIdleTimeout: '4h0m0s',
  // The kubelet sends "" for a pod without a RuntimeClass.
  runtimeHandlers: [''],
};

/**
 * The default CNI bridge of an icetray with this root dir: `icetray0` for the default one (what
 * the README and teaching material show), else `icetray-` and 6 hex digits of the root dir's
 * SHA-256 — stable across restarts, different per instance, and within IFNAMSIZ (15 characters).
 */
export function defaultBridge(rootDir: string): string {
  const root = resolve(rootDir);
  if (root === DEFAULTS.rootDir) return DEFAULTS.cniBridge;
  return `icetray-${createHash('sha256').update(root).digest('hex').slice(0, 6)}`;
}

/** The TOML key of each setting: snake_case, as containerd and CRI-O spell theirs. */
const KEYS: Record<keyof Config, string> = {
  socket: 'socket',
  rootDir: 'root_dir',
  stateDir: 'state_dir',
  pauseImage: 'pause_image',
  cgroupDriver: 'cgroup_driver',
  podCidr: 'pod_cidr',
  cniBridge: 'cni_bridge',
  cniConfDir: 'cni_conf_dir',
  cniBinDirs: 'cni_bin_dirs',
  enableIpForward: 'enable_ip_forward',
  logLevel: 'log_level',
  registry: 'registry',
  streamServerAddress: 'stream_server_address',
  streamServerPort: 'stream_server_port',
  streamIdleTimeout: 'stream_idle_timeout',
  runtimeHandlers: 'runtime_handlers',
};

export function tomlKey(field: keyof Config): string {
  return KEYS[field];
}

type Check = (key: string, value: unknown) => unknown;

function invalid(key: string, expected: string, value: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`config key "${key}": expected ${expected}, got ${JSON.stringify(value)}`);
}

const absolutePath: Check = (key, value) => {
  if (typeof value !== 'string' || !isAbsolute(value)) throw invalid(key, 'an absolute path', value);
  return value;
};

const nonEmptyString: Check = (key, value) => {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(key, 'a non-empty string', value);
  return value;
};

const oneOf =
  (choices: readonly string[]): Check =>
  (key, value) => {
    if (typeof value !== 'string' || !choices.includes(value)) throw invalid(key, `one of ${choices.join(', ')}`, value);
    return value;
  };

const boolean: Check = (key, value) => {
  if (typeof value !== 'boolean') throw invalid(key, 'true or false', value);
  return value;
};

const ipv4Cidr: Check = (key, value) => {
  const match = typeof value === 'string' ? /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value) : null;
  const octetsOk = match?.slice(1, 5).every((octet) => Number(octet) <= 255) ?? false;
  const prefix = Number(match?.[5]);
  // host-local needs room for a gateway and at least a few pods.
  if (!match || !octetsOk || prefix < 8 || prefix > 28)
    throw invalid(key, 'an IPv4 CIDR from /8 to /28, like "10.88.0.0/16"', value);
  return value;
};

/** Validates a pod CIDR (config key, or the kubelet's UpdateRuntimeConfig): throws naming `key`. */
export function validatePodCidr(key: string, value: string): string {
  return ipv4Cidr(key, value) as string;
}

const port: Check = (key, value) => {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535)
    throw invalid(key, 'a port from 0 to 65535', value);
  return value;
};

const duration: Check = (key, value) => {
  if (typeof value !== 'string' || parseDuration(value) === undefined)
    throw invalid(key, 'a duration like "4h0m0s", "30s" or "0" (never)', value);
  return value;
};

/**
 * A network interface name the kernel takes (dev_valid_name: at most IFNAMSIZ - 1 = 15 bytes, no
 * '/', ':' or whitespace), kept to letters, digits, '-' and '_'.
 */
const interfaceName: Check = (key, value) => {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$/.test(value))
    throw invalid(key, 'an interface name of at most 15 letters, digits, "-" or "_"', value);
  return value;
};

/**
 * A RuntimeClass handler is a DNS label (RFC 1123: at most 63 lowercase letters, digits and
 * '-'), as the Kubernetes API validates RuntimeClass.handler; "" is the default handler.
 */
export const RUNTIME_HANDLER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Handler names, each once; the default "" is always there and listed first. */
const runtimeHandlers: Check = (key, value) => {
  if (!Array.isArray(value)) throw invalid(key, 'a list of runtime handler names', value);
  const names = new Set<string>();
  for (const name of value) {
    if (typeof name !== 'string' || (name !== '' && !RUNTIME_HANDLER_NAME.test(name)))
      throw invalid(key, 'runtime handler names that are DNS labels (lowercase letters, digits, "-"; at most 63)', name);
    if (names.has(name)) throw invalid(key, 'each runtime handler once', name);
    names.add(name);
  }
  return ['', ...[...names].filter((name) => name !== '')];
};

const absolutePaths: Check = (key, value) => {
  if (!Array.isArray(value) || value.length === 0) throw invalid(key, 'a non-empty list of absolute paths', value);
  return value.map((item) => absolutePath(key, item));
};

const CHECKS: Record<keyof Config, Check> = {
  socket: absolutePath,
  rootDir: absolutePath,
  stateDir: absolutePath,
  pauseImage: nonEmptyString,
  cgroupDriver: oneOf(CGROUP_DRIVERS),
  podCidr: ipv4Cidr,
  cniBridge: interfaceName,
  cniConfDir: absolutePath,
  cniBinDirs: absolutePaths,
  enableIpForward: boolean,
  logLevel: oneOf(LOG_LEVELS),
  registry: (_key, value) => parseRegistryConfig(value),
  streamServerAddress: nonEmptyString,
  streamServerPort: port,
  streamIdleTimeout: duration,
  runtimeHandlers,
};

const FIELDS = Object.keys(KEYS) as (keyof Config)[];

/** What a config file set: values by field, where each came from, and what it could not honour. */
export interface FileSettings {
  settings: Partial<Config>;
  /** The key (in the file's own spelling) each setting came from. */
  keys: Partial<Record<keyof Config, string>>;
  warnings: string[];
}

function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return parseTomlText(text);
  } catch (err) {
    throw new InvalidArgumentError(`config file ${file}: ${messageOf(err)}`, { cause: err });
  }
}

/** Runs a dialect reader, turning its complaints into InvalidArgument errors naming the file. */
function dialectSettings(dialect: Dialect, table: Record<string, unknown>, file: string): FileSettings {
  let read: ReturnType<typeof readDialect>;
  try {
    read = readDialect(dialect, flatten(table));
  } catch (err) {
    throw new InvalidArgumentError(`config file ${file}: ${messageOf(err)}`, { cause: err });
  }
  const settings: Partial<Record<keyof Config, unknown>> = {};
  for (const [field, value] of Object.entries(read.settings) as [keyof Config, unknown][]) {
    settings[field] = CHECKS[field](read.keys[field] ?? KEYS[field], value);
  }
  return { settings: settings as Partial<Config>, keys: read.keys, warnings: read.warnings };
}

/**
 * Reads a config file. icetray's own file takes icetray's keys, and also the containerd
 * (`[plugins…]`) and CRI-O (`[crio…]`) spellings of the same settings; any other key is an
 * error naming it. A containerd or CRI-O file (`--flavor`) is read in its runtime's dialect,
 * where keys icetray cannot honour are warnings: real files hold many of them.
 */
export function parseConfigText(text: string, file: string, dialect: Dialect | 'icetray' = 'icetray'): FileSettings {
  const table = parseToml(text, file);
  if (dialect !== 'icetray') return dialectSettings(dialect, table, file);

  const known = new Map(FIELDS.map((field) => [KEYS[field], field]));
  const result: FileSettings = { settings: {}, keys: {}, warnings: [] };
  const settings: Partial<Record<keyof Config, unknown>> = {};
  const foreign: Record<Dialect, Record<string, unknown>> = { containerd: {}, crio: {} };
  for (const [key, value] of Object.entries(table)) {
    const field = known.get(key);
    if (field !== undefined) {
      settings[field] = CHECKS[field](key, value);
      result.keys[field] = key;
    } else if (key === 'plugins' || key === 'version') {
      foreign.containerd[key] = value;
    } else if (key === 'crio') {
      foreign.crio[key] = value;
    } else {
      throw new InvalidArgumentError(
        `config file ${file}: unknown key "${key}" (known keys: ${[...known.keys()].join(', ')}; containerd's [plugins…] and CRI-O's [crio…] tables)`,
      );
    }
  }
  for (const dialect of ['containerd', 'crio'] as const) {
    if (Object.keys(foreign[dialect]).length === 0) continue;
    const read = dialectSettings(dialect, foreign[dialect], file);
    for (const [field, value] of Object.entries(read.settings) as [keyof Config, unknown][]) {
      const earlier = result.keys[field];
      if (earlier !== undefined && JSON.stringify(settings[field]) !== JSON.stringify(value)) {
        throw new InvalidArgumentError(`config file ${file}: "${earlier}" and ${dialect}'s "${read.keys[field] ?? ''}" disagree`);
      }
      settings[field] = value;
      result.keys[field] = read.keys[field] ?? KEYS[field];
    }
    result.warnings.push(...read.warnings);
  }
  result.settings = settings as Partial<Config>;
  return result;
}

/** The real runtimes icetray can stand in for, with their default socket and config file. */
export const FLAVORS = {
  containerd: { socket: '/run/containerd/containerd.sock', file: '/etc/containerd/config.toml', dialect: 'containerd' },
  crio: { socket: '/var/run/crio/crio.sock', file: '/etc/crio/crio.conf', dialect: 'crio' },
  // cri-dockerd has no config file: its settings are flags (--pod-infra-container-image).
  'cri-dockerd': { socket: '/run/cri-dockerd.sock', file: undefined, dialect: undefined },
} as const;
export type Flavor = keyof typeof FLAVORS;

export interface LoadOptions {
  /** `--config`: a file that must exist. Without it the default path is read if present. */
  file?: string | undefined;
  /** Command-line flags, which win over the file. */
  flags?: Partial<Config>;
  /** `--flavor`: take that runtime's default socket and read its config file in its dialect. */
  flavor?: Flavor | undefined;
}

/** Defaults, then the config file, then flags: the config in force and where each value came from. */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const flavor = options.flavor === undefined ? undefined : FLAVORS[options.flavor];
  const path = options.file ?? (flavor === undefined ? DEFAULT_CONFIG_FILE : flavor.file);
  let fromFile: FileSettings = { settings: {}, keys: {}, warnings: [] };
  let file: string | undefined;
  if (path !== undefined) {
    try {
      fromFile = parseConfigText(readFileSync(path, 'utf8'), path, flavor?.dialect ?? 'icetray');
      file = path;
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      // No file at the default path is fine: the defaults work on a fresh machine.
      if (!missing || options.file !== undefined) {
        throw missing ? new InvalidArgumentError(`config file ${path} does not exist`) : err;
      }
    }
  }
  const config = { ...DEFAULTS };
  const sources = Object.fromEntries(FIELDS.map((field) => [field, 'default'])) as Record<keyof Config, Source>;
  const origins = Object.fromEntries(FIELDS.map((field) => [field, 'default'])) as Record<keyof Config, string>;
  if (flavor !== undefined && options.flavor !== undefined) {
    config.socket = flavor.socket;
    sources.socket = 'flavor';
    origins.socket = `--flavor ${options.flavor}: ${options.flavor}'s default socket`;
  }
  const layers: [Partial<Config>, Source, (field: keyof Config) => string][] = [
    [fromFile.settings, 'file', (field) => `${file ?? ''}: ${fromFile.keys[field] ?? KEYS[field]}`],
    [options.flags ?? {}, 'flag', (field) => `command line: --${KEYS[field].replaceAll('_', '-')}`],
  ];
  for (const [layer, source, origin] of layers) {
    for (const field of FIELDS) {
      const value = layer[field];
      if (value === undefined) continue;
      if (field === 'runtimeHandlers' && source === 'flag') {
        // --runtime-handler adds to the handlers of the file (or the default), never removes one.
        const added = (value as string[]).filter((name) => !config.runtimeHandlers.includes(name));
        config.runtimeHandlers = CHECKS.runtimeHandlers(KEYS[field], [...config.runtimeHandlers, ...added]) as string[];
        origins[field] = `${origins[field]}, then command line: --runtime-handler`;
        sources[field] = source;
        continue;
      }
      // File values were checked as they were read; flags are checked here.
      (config as Record<keyof Config, unknown>)[field] = source === 'flag' ? CHECKS[field](KEYS[field], value) : value;
      sources[field] = source;
      origins[field] = origin(field);
    }
  }
  if (sources.cniBridge === 'default') {
    config.cniBridge = defaultBridge(config.rootDir);
    if (config.cniBridge !== DEFAULTS.cniBridge) origins.cniBridge = `default for root_dir ${config.rootDir}`;
  }
  return { config, file, sources, origins, warnings: fromFile.warnings };
}
