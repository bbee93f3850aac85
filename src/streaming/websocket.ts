import { Duplex, PassThrough, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import type { RemoteCommandChannels, RemoteCommandProtocol } from './remote-command.js';

/**
 * WebSocket transports (k8s.io/streaming `wsstream`): the channel protocol for exec/attach,
 * where every binary message starts with its channel number, and the tunnel that carries a
 * whole SPDY session for port-forward (`SPDY/3.1+portforward.k8s.io`).
 */

/** Subprotocols for exec/attach over WebSocket, in the server's order of preference. */
export const WEBSOCKET_CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'channel.k8s.io'] as const;
export type WebSocketChannelProtocol = (typeof WEBSOCKET_CHANNEL_PROTOCOLS)[number];

/** client-go prefixes SPDY protocols tunnelled over WebSocket with this. */
export const TUNNEL_PREFIX = 'SPDY/3.1+';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
/** v5: `[255, channel]` from the client half-closes that channel (stdin EOF). */
const CLOSE_SIGNAL = 255;
/** The normal-closure code: gorilla/websocket reports it to client-go's readers as EOF. */
const NORMAL_CLOSURE = 1000;

export interface WebSocketChannelOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  idleTimeoutMs?: number | undefined;
}

function channelWriter(ws: WebSocket, channel: number, activity: () => void): Writable {
  const writer = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      activity();
      ws.send(Buffer.concat([Buffer.from([channel]), chunk]), { binary: true }, (err) => {
        callback(err ?? null);
      });
    },
  });
  // Writing after the client left fails; 'close' on the socket already reports that.
  writer.on('error', () => undefined);
  return writer;
}

/**
 * The channels of an exec/attach session on an open WebSocket. Channel numbers follow the
 * kubelet: 0 stdin, 1 stdout, 2 stderr, 3 error (status), 4 resize.
 */
export function webSocketChannels(
  ws: WebSocket,
  protocol: RemoteCommandProtocol,
  options: WebSocketChannelOptions,
): RemoteCommandChannels {
  const lost = new AbortController();
  let done = false;
  let idleTimer: NodeJS.Timeout | undefined;
  const activity = (): void => {
    if (!done) idleTimer?.refresh();
  };
  if ((options.idleTimeoutMs ?? 0) > 0) {
    idleTimer = setTimeout(() => ws.terminate(), options.idleTimeoutMs).unref();
  }
  const stdin = options.stdin ? new PassThrough() : undefined;
  const resize = options.tty && protocol !== 'channel.k8s.io' ? new PassThrough() : undefined;
  const inputs = new Map<number, PassThrough>();
  if (stdin !== undefined) inputs.set(STDIN, stdin);
  if (resize !== undefined) inputs.set(RESIZE, resize);

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary || data.length === 0) return;
    const channel = data[0] ?? 0;
    if (channel === CLOSE_SIGNAL && protocol === 'v5.channel.k8s.io') {
      inputs.get(data[1] ?? -1)?.end();
      return;
    }
    const input = inputs.get(channel);
    if (input === undefined || input.writableEnded) return;
    activity();
    input.write(data.subarray(1));
  });
  ws.on('error', () => undefined); // followed by 'close', which cleans up
  ws.on('close', () => {
    clearTimeout(idleTimer);
    for (const input of inputs.values()) input.end();
    if (!done) lost.abort();
  });

  const stdout = options.stdout ? channelWriter(ws, STDOUT, activity) : undefined;
  const stderr = options.stderr && !options.tty ? channelWriter(ws, STDERR, activity) : undefined;
  // The kubelet greets with an empty message on the first channel it writes to, so the client
  // knows the session is up before any output.
  const greeting = options.stdout ? STDOUT : options.stderr ? STDERR : ERROR;
  ws.send(Buffer.from([greeting]), { binary: true });

  return {
    stdin,
    stdout,
    stderr,
    resize,
    writeStatus(data) {
      return new Promise((resolve) => {
        if (data === undefined) {
          resolve();
          return;
        }
        ws.send(Buffer.concat([Buffer.from([ERROR]), data]), { binary: true }, () => {
          resolve();
        });
      });
    },
    close() {
      done = true;
      clearTimeout(idleTimer);
      ws.close(NORMAL_CLOSURE);
    },
    lost: lost.signal,
  };
}

/**
 * A byte duplex over binary WebSocket messages, for the SPDY tunnel: each write is one
 * message, ending our side closes the socket normally (client-go reads that as EOF).
 */
export function webSocketTunnel(ws: WebSocket): Duplex {
  const tunnel = new Duplex({
    read() {
      ws.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      ws.send(chunk, { binary: true }, (err) => {
        callback(err ?? null);
      });
    },
    final(callback) {
      ws.close(NORMAL_CLOSURE);
      callback();
    },
    destroy(err, callback) {
      ws.terminate();
      callback(err);
    },
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      tunnel.destroy(new Error('the SPDY tunnel carries binary messages only'));
      return;
    }
    if (!tunnel.push(data)) ws.pause();
  });
  ws.on('close', () => {
    tunnel.push(null);
  });
  ws.on('error', (err) => tunnel.destroy(err));
  return tunnel;
}
