import { FLAVORS, loadConfig, type Config, type Flavor, type LoadedConfig } from '../config/config.js';
import { InvalidArgumentError } from '../errors.js';
import type { LogLevel } from '../log.js';

/** The options every command that reads icetray's config takes. */
export const CONFIG_OPTIONS = {
  config: { type: 'string' },
  flavor: { type: 'string' },
  socket: { type: 'string' },
  'root-dir': { type: 'string' },
  'state-dir': { type: 'string' },
  'pod-infra-container-image': { type: 'string' },
  'cni-conf-dir': { type: 'string' },
  'log-level': { type: 'string' },
  'runtime-handler': { type: 'string' },
} as const;

export const CONFIG_HELP = `  --config FILE       TOML config file (default /etc/icetray/config.toml, if it exists;
                      with --flavor, that runtime's own config file)
  --flavor NAME       stand in for containerd, crio or cri-dockerd: take its default socket
                      and read its config file in its own spelling
  --socket PATH       the CRI socket (default /run/icetray/icetray.sock)
  --root-dir DIR      persistent state (default /var/lib/icetray)
  --state-dir DIR     volatile state (default /run/icetray)
  --pod-infra-container-image IMAGE
                      the pause image, spelled as cri-dockerd's flag
  --cni-conf-dir DIR  CNI network configs (default /etc/icetray/cni/net.d), as cri-dockerd's flag
  --log-level LEVEL   fatal, error, warn, info, debug, trace or silent (default info)
  --runtime-handler NAME[,NAME…]
                      runtime handlers to accept besides those of the config file (a
                      RuntimeClass's handler, such as test-handler): aliases of the default
`;

export type Values = Record<string, string | boolean | undefined>;

function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** Loads the config in force from the command line, as `serve` and `config show` both do. */
export function loadFromOptions(values: Values): LoadedConfig {
  const flavor = text(values, 'flavor');
  if (flavor !== undefined && !(flavor in FLAVORS)) {
    throw new InvalidArgumentError(`--flavor must be one of ${Object.keys(FLAVORS).join(', ')}, got "${flavor}"`);
  }
  const flags: Partial<Config> = {};
  const socket = text(values, 'socket');
  if (socket !== undefined) flags.socket = socket;
  const logLevel = text(values, 'log-level');
  if (logLevel !== undefined) flags.logLevel = logLevel as LogLevel;
  const rootDir = text(values, 'root-dir');
  if (rootDir !== undefined) flags.rootDir = rootDir;
  const stateDir = text(values, 'state-dir');
  if (stateDir !== undefined) flags.stateDir = stateDir;
  const pauseImage = text(values, 'pod-infra-container-image');
  if (pauseImage !== undefined) flags.pauseImage = pauseImage;
  const cniConfDir = text(values, 'cni-conf-dir');
  if (cniConfDir !== undefined) flags.cniConfDir = cniConfDir;
  // One flag, a comma-separated list: handler names are DNS labels, which have no comma.
  const handlers = text(values, 'runtime-handler');
  if (handlers !== undefined) flags.runtimeHandlers = handlers.split(',').map((name) => name.trim());
  return loadConfig({ file: text(values, 'config'), flags, flavor: flavor as Flavor | undefined });
}
