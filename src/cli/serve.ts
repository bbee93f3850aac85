import { loadConfig, type Config } from '../config/config.js';
import { log, setLogLevel, type LogLevel } from '../log.js';
import { ensureIpForward } from '../sandbox/network.js';
import { createRuntime, runtimeReadiness } from '../server/runtime.js';
import { FailedPreconditionError } from '../errors.js';
import { startServer } from '../server/serve.js';

export const SERVE_HELP = `Usage: icetray serve [options]

Serve the CRI v1 RuntimeService and ImageService on a Unix socket, until SIGTERM or SIGINT.

Options:
  --config FILE       TOML config file (default /etc/icetray/config.toml, if it exists)
  --socket PATH       the CRI socket (default /run/icetray/icetray.sock)
  --log-level LEVEL   fatal, error, warn, info, debug, trace or silent (default info)
  -h, --help          show this help
`;

export const SERVE_OPTIONS = {
  config: { type: 'string' },
  socket: { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export async function serve(values: Record<string, string | boolean | undefined>): Promise<number> {
  const flags: Partial<Config> = {};
  if (typeof values['socket'] === 'string') flags.socket = values['socket'];
  if (typeof values['log-level'] === 'string') flags.logLevel = values['log-level'] as LogLevel;
  const loaded = loadConfig({ file: typeof values['config'] === 'string' ? values['config'] : undefined, flags });
  const { config } = loaded;
  setLogLevel(config.logLevel);

  await ensureIpForward(config.enableIpForward);
  const runtime = await createRuntime(loaded);
  // No pause, no pods: refuse to start rather than serve a runtime that cannot run one.
  const ready = await runtimeReadiness(runtime);
  if (ready.reason === 'PauseBinaryMissing') throw new FailedPreconditionError(ready.message);
  const server = await startServer(runtime);

  const endpoint = `unix://${server.socket}`;
  log.info({ endpoint, config: loaded.file ?? '(defaults)', cgroupDriver: config.cgroupDriver }, 'icetray is serving CRI v1');
  process.stdout.write(
    `icetray serving CRI v1 on ${endpoint}\n` + `point crictl at it:  echo 'runtime-endpoint: ${endpoint}' > /etc/crictl.yaml\n`,
  );

  await new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'shutting down: draining calls in flight');
      resolve();
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
  await server.stop();
  log.info('stopped');
  return 0;
}
