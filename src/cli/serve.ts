import { FailedPreconditionError } from '../errors.js';
import { log, setLogLevel } from '../log.js';
import { ensureIpForward } from '../sandbox/network.js';
import { createRuntime, runtimeReadiness } from '../server/runtime.js';
import { startServer, type RunningServer } from '../server/serve.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';

export const SERVE_HELP = `Usage: icetray serve [options]

Serve the CRI v1 RuntimeService and ImageService on a Unix socket, until SIGTERM or SIGINT.

Options:
${CONFIG_HELP}  -h, --help          show this help
`;

export const SERVE_OPTIONS = CONFIG_OPTIONS;

export async function serve(values: Values): Promise<number> {
  const loaded = loadFromOptions(values);
  const { config } = loaded;
  setLogLevel(config.logLevel);
  for (const warning of loaded.warnings) log.warn({ file: loaded.file }, warning);

  await ensureIpForward(config.enableIpForward);
  const runtime = await createRuntime(loaded);
  let server: RunningServer;
  try {
    // No pause, no pods: refuse to start rather than serve a runtime that cannot run one.
    const ready = await runtimeReadiness(runtime);
    if (ready.reason === 'PauseBinaryMissing') throw new FailedPreconditionError(ready.message);
    server = await startServer(runtime);
  } catch (err) {
    // Release what the runtime opened (streaming server, D-Bus), so the process can exit.
    await runtime.close();
    throw err;
  }

  // Listen for the stop signals before saying "serving": a supervisor may send one at once.
  const stopped = new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'shutting down: draining calls in flight');
      resolve();
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });
  const endpoint = `unix://${server.socket}`;
  log.info({ endpoint, config: loaded.file ?? '(defaults)', cgroupDriver: config.cgroupDriver }, 'icetray is serving CRI v1');
  process.stdout.write(
    `icetray serving CRI v1 on ${endpoint}\n` + `point crictl at it:  echo 'runtime-endpoint: ${endpoint}' > /etc/crictl.yaml\n`,
  );
  await stopped;
  await server.stop();
  await runtime.close();
  log.info('stopped: the containers run on, and the next icetray takes them up again');
  // Running containers' pipes and monitor processes are still open handles: they would keep
  // Node's event loop alive, and they are meant to outlive icetray. So end the process here.
  process.exit(0);
}
