import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { InvalidArgumentError, messageOf } from '../errors.js';

/**
 * Where images are pulled from: per-registry mirrors, tried in order before the registry itself,
 * as containerd configures them (https://github.com/containerd/containerd/blob/main/docs/hosts.md).
 * Two forms, usable together: inline `[registry.mirrors."<host>"] endpoints = [...]` and
 * `config_path`, a folder of `<host>/hosts.toml` files (with `_default/hosts.toml` for any host).
 */
export interface RegistryConfig {
  /** Mirror endpoints by registry host (`registry.k8s.io`, `127.0.0.1:5000`), tried first, in order. */
  mirrors: Record<string, string[]>;
  /** containerd's hosts.toml folder, read at each pull so edits apply without a restart. */
  configPath: string | undefined;
}

export const DEFAULT_REGISTRY_CONFIG: RegistryConfig = { mirrors: {}, configPath: undefined };

/** One place to fetch from: an API root (`…/v2`) and how to talk to it. */
export interface RegistryHost {
  /** The URL requests go under: `http://127.0.0.1:5000/v2`. */
  apiRoot: string;
  /** The host:port, which credentials are matched against. */
  host: string;
  /** Skip TLS certificate verification (hosts.toml `skip_verify`). */
  skipVerify: boolean;
  /** Extra CA certificates, PEM (hosts.toml `ca`). */
  ca: string[];
  /** Extra request headers (hosts.toml `[host."…".header]`). */
  headers: Record<string, string>;
  /** False for a mirror: the registry itself comes last and its failure is the one reported. */
  upstream: boolean;
}

function invalid(key: string, expected: string, value: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`config key "${key}": expected ${expected}, got ${JSON.stringify(value)}`);
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks an endpoint URL: http or https, a host, no query. Plain HTTP is used only where an
 * endpoint says `http://`, so an air-gapped mirror can be plain while the internet stays TLS.
 */
function endpointUrl(key: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(key, 'a URL such as "https://mirror.example:5000"', value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(key, 'a URL such as "https://mirror.example:5000"', value);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.host === '' || url.search !== '' || url.hash !== '')
    throw invalid(key, 'an http:// or https:// URL with a host and no query', value);
  return value.replace(/\/+$/, '');
}

/** Validates the `[registry]` table of icetray's config file. */
export function parseRegistryConfig(value: unknown): RegistryConfig {
  if (value === undefined) return { mirrors: {}, configPath: undefined };
  if (!isTable(value)) throw invalid('registry', 'a table', value);
  const config: RegistryConfig = { mirrors: {}, configPath: undefined };
  for (const [key, item] of Object.entries(value)) {
    if (key === 'config_path') {
      if (typeof item !== 'string' || !isAbsolute(item)) throw invalid('registry.config_path', 'an absolute path', item);
      config.configPath = item;
    } else if (key === 'mirrors') {
      if (!isTable(item)) throw invalid('registry.mirrors', 'a table of registry hosts', item);
      for (const [host, mirror] of Object.entries(item)) {
        const base = `registry.mirrors.${host}`;
        if (!isTable(mirror)) throw invalid(base, 'a table with "endpoints"', mirror);
        for (const mirrorKey of Object.keys(mirror)) {
          if (mirrorKey !== 'endpoints')
            throw new InvalidArgumentError(`config key "${base}.${mirrorKey}" is unknown (known: endpoints)`);
        }
        const endpoints = mirror['endpoints'];
        if (!Array.isArray(endpoints)) throw invalid(`${base}.endpoints`, 'a list of URLs', endpoints);
        config.mirrors[host] = endpoints.map((endpoint) => endpointUrl(`${base}.endpoints`, endpoint));
      }
    } else {
      throw new InvalidArgumentError(`config key "registry.${key}" is unknown (known: mirrors, config_path)`);
    }
  }
  return config;
}

/** containerd's rule: a URL path gets `/v2` appended unless it already ends so or `override_path` says not to. */
function apiRoot(url: string, overridePath: boolean): string {
  const trimmed = url.replace(/\/+$/, '');
  if (overridePath || trimmed.endsWith('/v2')) return trimmed;
  return `${trimmed}/v2`;
}

/** The upstream URL of a registry host: Docker Hub's real host, plain HTTP for loopback (containerd's `MatchLocalhost`). */
export function upstreamUrl(registry: string): string {
  if (registry === 'docker.io') return 'https://registry-1.docker.io';
  const hostname = registry.replace(/:\d+$/, '');
  const loopback = hostname === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(hostname) || hostname === '[::1]';
  return `${loopback ? 'http' : 'https'}://${registry}`;
}

function plainHost(url: string, upstream: boolean): RegistryHost {
  return { apiRoot: apiRoot(url, false), host: new URL(url).host, skipVerify: false, ca: [], headers: {}, upstream };
}

async function readHostsToml(
  dir: string,
  registry: string,
): Promise<{ file: string; table: Record<string, unknown> } | undefined> {
  for (const name of [registry, '_default']) {
    const file = join(dir, name, 'hosts.toml');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    try {
      return { file, table: parseToml(text) };
    } catch (err) {
      throw new InvalidArgumentError(`${file}: ${messageOf(err)}`, { cause: err });
    }
  }
  return undefined;
}

async function caList(file: string, key: string, value: unknown): Promise<string[]> {
  if (value === undefined) return [];
  const paths = Array.isArray(value) ? value : [value];
  return Promise.all(
    paths.map((path) => {
      if (typeof path !== 'string') throw new InvalidArgumentError(`${file}: "${key}" must be a path or a list of paths`);
      return readFile(isAbsolute(path) ? path : join(file, '..', path), 'utf8');
    }),
  );
}

const HOST_KEYS = ['capabilities', 'skip_verify', 'ca', 'header', 'override_path'];

/** The hosts of a hosts.toml file: its `[host."…"]` tables in file order, then its `server`. */
async function hostsFromToml(file: string, table: Record<string, unknown>, registry: string): Promise<RegistryHost[]> {
  const hosts: RegistryHost[] = [];
  for (const key of Object.keys(table)) {
    if (key !== 'server' && key !== 'host' && !HOST_KEYS.includes(key))
      throw new InvalidArgumentError(`${file}: key "${key}" is not supported (supported: server, host, ${HOST_KEYS.join(', ')})`);
  }
  const entries: [string, Record<string, unknown>, boolean][] = [];
  const hostTables = table['host'] ?? {};
  if (!isTable(hostTables)) throw new InvalidArgumentError(`${file}: "host" must be a table of URLs`);
  for (const [url, settings] of Object.entries(hostTables)) {
    if (!isTable(settings)) throw new InvalidArgumentError(`${file}: host."${url}" must be a table`);
    entries.push([url, settings, false]);
  }
  const server = table['server'];
  if (server !== undefined && typeof server !== 'string') throw new InvalidArgumentError(`${file}: "server" must be a URL`);
  // The top-level keys apply to the server, as in containerd.
  entries.push([server ?? upstreamUrl(registry), table, true]);
  for (const [url, settings, upstream] of entries) {
    const where = upstream ? 'server' : `host."${url}"`;
    endpointUrl(`${file}: ${where}`, url);
    for (const key of Object.keys(settings)) {
      if (!upstream && !HOST_KEYS.includes(key))
        throw new InvalidArgumentError(`${file}: ${where}.${key} is not supported (supported: ${HOST_KEYS.join(', ')})`);
    }
    const capabilities = settings['capabilities'] ?? ['pull', 'resolve'];
    // A host that may not serve pulls (a push-only one) is not a source.
    if (!Array.isArray(capabilities) || !capabilities.includes('pull')) continue;
    const skipVerify = settings['skip_verify'] ?? false;
    if (typeof skipVerify !== 'boolean') throw new InvalidArgumentError(`${file}: ${where}.skip_verify must be true or false`);
    const overridePath = settings['override_path'] ?? false;
    if (typeof overridePath !== 'boolean')
      throw new InvalidArgumentError(`${file}: ${where}.override_path must be true or false`);
    const header = settings['header'] ?? {};
    if (!isTable(header)) throw new InvalidArgumentError(`${file}: ${where}.header must be a table`);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(header)) {
      headers[name] = Array.isArray(value) ? value.map(String).join(', ') : String(value);
    }
    hosts.push({
      apiRoot: apiRoot(url, overridePath),
      host: new URL(url).host,
      skipVerify,
      ca: await caList(file, `${where}.ca`, settings['ca']),
      headers,
      upstream,
    });
  }
  return hosts;
}

/**
 * The hosts to try for a registry, in order: inline mirrors, then hosts.toml's hosts, then the
 * registry itself (hosts.toml's `server` when it names one).
 */
export async function registryHosts(config: RegistryConfig, registry: string): Promise<RegistryHost[]> {
  const mirrors = (config.mirrors[registry] ?? []).map((url) => plainHost(url, false));
  const hostsToml = config.configPath === undefined ? undefined : await readHostsToml(config.configPath, registry);
  if (hostsToml === undefined) return [...mirrors, plainHost(upstreamUrl(registry), true)];
  return [...mirrors, ...(await hostsFromToml(hostsToml.file, hostsToml.table, registry))];
}
