import { Server, ServerCredentials } from '@grpc/grpc-js';
import { connect } from 'node:net';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FailedPreconditionError } from '../errors.js';
import { ImageServiceService, RuntimeServiceService } from '../generated/api.js';
import { log } from '../log.js';
import { decodingSafely } from './rpc.js';
import type { Runtime } from './runtime.js';
import { imageService, runtimeService } from './services.js';

/** How long SIGTERM/SIGINT waits for calls in flight before cutting them off. */
const DRAIN_MS = 10_000;

/** True when something accepts connections on the socket: another live server owns it. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket path usable: creates its folder, removes a stale socket left by a server
 * that died, and refuses to touch one that a live server still answers on.
 */
async function claimSocket(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const existing = await stat(path).catch(() => undefined);
  if (existing === undefined) return;
  if (!existing.isSocket()) {
    throw new FailedPreconditionError(`${path} exists and is not a socket: refusing to replace it`);
  }
  if (await socketIsLive(path)) {
    throw new FailedPreconditionError(`another server is already listening on ${path}: stop it first, or pass --socket`);
  }
  log.info({ socket: path }, 'removing a stale socket left by a server that is gone');
  await rm(path);
}

export interface RunningServer {
  readonly socket: string;
  /** Stops accepting calls, lets calls in flight finish (up to a bound), removes the socket. */
  stop(): Promise<void>;
}

/** Serves both CRI services on the configured Unix socket, mode 0660 (root and its group). */
export async function startServer(runtime: Runtime): Promise<RunningServer> {
  const socket = runtime.loaded.config.socket;
  await claimSocket(socket);
  const server = new Server();
  server.addService(decodingSafely(RuntimeServiceService), runtimeService(runtime));
  server.addService(decodingSafely(ImageServiceService), imageService(runtime));
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  await chmod(socket, 0o660);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          log.warn({ drainMs: DRAIN_MS }, 'calls still in flight after the drain period: cutting them off');
          server.forceShutdown();
          resolve();
        }, DRAIN_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await rm(socket, { force: true });
    })();
    return stopping;
  };
  return { socket, stop };
}
