import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { InvalidArgumentError } from '../errors.js';
import type { AttachRequest, ExecRequest, PortForwardRequest } from '../generated/api.js';
import { log } from '../log.js';
import type { StreamingBackend } from './backend.js';
import { PORT_FORWARD_PROTOCOL, PortForwardStreams, validatePortForwardStream } from './port-forward.js';
import {
  REMOTE_COMMAND_PROTOCOLS,
  collectSpdyStreams,
  expectedStreamCount,
  runRemoteCommand,
  spdyChannels,
  type RemoteCommandProtocol,
  type RemoteCommandRequest,
} from './remote-command.js';
import { SpdySession, type SpdyStream } from './spdy.js';
import { TokenCache } from './tokens.js';
import { TUNNEL_PREFIX, WEBSOCKET_CHANNEL_PROTOCOLS, webSocketChannels, webSocketTunnel } from './websocket.js';

/**
 * The streaming server: the HTTP endpoint behind the URLs that Exec, Attach and PortForward
 * return, speaking what the kubelet's streaming server speaks (k8s.io/kubelet cri/streaming):
 * `/exec/<token>`, `/attach/<token>`, `/portforward/<token>`, GET or POST, upgraded to SPDY/3.1
 * or WebSocket. A token works once and for a minute; anything else is 404.
 */

/** The kubelet's and containerd's default `stream_idle_timeout`. */
export const DEFAULT_IDLE_TIMEOUT_MS = 4 * 60 * 60 * 1000;
/** How long a client may take to open its streams (remotecommand DefaultStreamCreationTimeout). */
export const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;

export interface StreamingServerOptions {
  /** Address to listen on; default loopback (containerd's `stream_server_address`). */
  host?: string | undefined;
  /** Port; 0 (default) picks a free one (containerd's `stream_server_port`). */
  port?: number | undefined;
  /** A session with no data either way for this long is closed; 0 never. */
  idleTimeoutMs?: number | undefined;
  streamCreationTimeoutMs?: number | undefined;
  backend: StreamingBackend;
}

export interface StreamingServer {
  /** Where the server listens, as used in its URLs (`http://127.0.0.1:41234`). */
  readonly baseUrl: string;
  /** The one-time URL for an Exec request; throws InvalidArgumentError for a bad request. */
  execUrl(request: ExecRequest): string;
  attachUrl(request: AttachRequest): string;
  portForwardUrl(request: PortForwardRequest): string;
  /** Stops listening and drops every open session. */
  close(): Promise<void>;
}

type Pending = RemoteCommandRequest | { kind: 'portforward'; request: PortForwardRequest };

/** The kubelet's validateExecRequest / validateAttachRequest. */
function validateStreams(request: ExecRequest | AttachRequest): void {
  if (request.containerId === '') throw new InvalidArgumentError('missing required container_id');
  // With a pty there is a single output stream (api.proto, ExecRequest.stderr).
  if (request.tty && request.stderr) throw new InvalidArgumentError('tty and stderr cannot both be true');
  if (!request.stdin && !request.stdout && !request.stderr) {
    throw new InvalidArgumentError('one of stdin, stdout, or stderr must be set');
  }
}

/** A wildcard listen address is not a host a client can dial: URLs then name loopback. */
function urlHost(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return isIP(address) === 6 ? `[${address}]` : address;
}

/** Writes a plain HTTP error on a socket that was handed to us by the 'upgrade' event. */
function rejectUpgrade(socket: Duplex, code: number, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? ''}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Header values, split at commas (Go's httpstream reads `X-Stream-Protocol-Version` so). */
function headerList(request: IncomingMessage, name: string): string[] {
  const raw = request.headersDistinct[name] ?? [];
  return raw.flatMap((value) => value.split(',').map((item) => item.trim())).filter((item) => item !== '');
}

/** The first protocol the client offers that the server supports (httpstream.Handshake). */
function negotiate<P extends string>(offered: string[], supported: readonly P[]): P | undefined {
  return offered.find((protocol): protocol is P => (supported as readonly string[]).includes(protocol));
}

const ROUTE = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/;

export async function startStreamingServer(options: StreamingServerOptions): Promise<StreamingServer> {
  const tokens = new TokenCache<Pending>();
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const creationTimeoutMs = options.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS;
  const { backend } = options;
  const sockets = new Set<Duplex>();
  const chosenProtocol = new WeakMap<IncomingMessage, string>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  // `SPDY/3.1+portforward.k8s.io` is not an RFC 7230 token ("/"), which ws refuses to parse:
  // the offer is taken off the request before ws sees it and the answer added here.
  wss.on('headers', (headers: string[], request: IncomingMessage) => {
    const protocol = chosenProtocol.get(request);
    if (protocol !== undefined) headers.push(`Sec-WebSocket-Protocol: ${protocol}`);
  });

  /** Consumes the token of a request path: the pending request, or undefined (404). */
  function consume(url: string | undefined): Pending | undefined {
    const match = ROUTE.exec(new URL(url ?? '/', 'http://streaming').pathname);
    if (match === null) return undefined;
    const pending = tokens.consume(match[2] ?? '');
    return pending?.kind === match[1] ? pending : undefined;
  }

  function onRequest(request: IncomingMessage, response: ServerResponse): void {
    const pending = request.method === 'GET' || request.method === 'POST' ? consume(request.url) : undefined;
    // A plain request spends the token like any other, as the kubelet's handlers do.
    const [code, message] =
      pending === undefined ? [404, '404 page not found'] : [400, 'unable to upgrade: missing upgrade headers in request'];
    response.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
  }

  function onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // a vanished client is normal; 'close' cleans up
    const pending = request.method === 'GET' || request.method === 'POST' ? consume(request.url) : undefined;
    if (pending === undefined) {
      rejectUpgrade(socket, 404, '404 page not found');
      return;
    }
    if ('setNoDelay' in socket) (socket as Socket).setNoDelay(true);
    const upgrade = (request.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') upgradeWebSocket(request, socket, head, pending);
    else if (upgrade === 'spdy/3.1') upgradeSpdy(request, socket, head, pending);
    else rejectUpgrade(socket, 400, `unable to upgrade: unsupported protocol "${upgrade}"`);
  }

  function upgradeSpdy(request: IncomingMessage, socket: Duplex, head: Buffer, pending: Pending): void {
    const offered = headerList(request, 'x-stream-protocol-version');
    const supported = pending.kind === 'portforward' ? [PORT_FORWARD_PROTOCOL] : REMOTE_COMMAND_PROTOCOLS;
    const protocol = negotiate(offered, supported);
    if (offered.length === 0) {
      rejectUpgrade(socket, 400, 'unable to upgrade: header X-Stream-Protocol-Version does not exist in request');
      return;
    }
    if (protocol === undefined) {
      rejectUpgrade(
        socket,
        403,
        `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server accepts [${supported.join(' ')}]`,
      );
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        `X-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
    );
    if (head.length > 0) socket.unshift(head);
    serveSpdy(socket, pending, protocol);
  }

  function serveSpdy(transport: Duplex, pending: Pending, protocol: string): void {
    if (pending.kind === 'portforward') {
      const forwards = new PortForwardStreams(pending.request.podSandboxId, backend, creationTimeoutMs);
      const session = new SpdySession(transport, { idleTimeoutMs, validate: validatePortForwardStream });
      session.on('stream', (stream: SpdyStream) => {
        forwards.accept(stream);
      });
      session.on('close', () => {
        forwards.close();
      });
      return;
    }
    const session = new SpdySession(transport, { idleTimeoutMs });
    const remoteProtocol = protocol as RemoteCommandProtocol;
    const lost = new AbortController();
    session.on('close', () => {
      lost.abort();
    });
    collectSpdyStreams(session, expectedStreamCount(pending.request, remoteProtocol), creationTimeoutMs)
      .then((streams) => runRemoteCommand(remoteProtocol, pending, spdyChannels(session, streams, lost.signal), backend))
      .catch((err: unknown) => {
        log.info({ containerId: pending.request.containerId, err }, 'streaming session failed');
        session.destroy();
      });
  }

  function upgradeWebSocket(request: IncomingMessage, socket: Duplex, head: Buffer, pending: Pending): void {
    const offered = headerList(request, 'sec-websocket-protocol');
    const protocol =
      pending.kind === 'portforward'
        ? negotiate(offered, [`${TUNNEL_PREFIX}${PORT_FORWARD_PROTOCOL}`])
        : negotiate(offered, WEBSOCKET_CHANNEL_PROTOCOLS);
    if (protocol === undefined) {
      // Port-forward's older WebSocket protocol (ports in the query) is not served: client-go
      // tunnels SPDY instead since 1.30.
      rejectUpgrade(socket, 400, `requested protocol(s) are not supported: [${offered.join(' ')}]`);
      return;
    }
    chosenProtocol.set(request, protocol);
    delete request.headers['sec-websocket-protocol'];
    wss.handleUpgrade(request, socket, head, (ws: WebSocket) => {
      if (pending.kind === 'portforward') {
        serveSpdy(webSocketTunnel(ws), pending, PORT_FORWARD_PROTOCOL);
        return;
      }
      const channelProtocol = protocol as RemoteCommandProtocol;
      const { stdin, stdout, stderr, tty } = pending.request;
      const channels = webSocketChannels(ws, channelProtocol, { stdin, stdout, stderr, tty, idleTimeoutMs });
      runRemoteCommand(channelProtocol, pending, channels, backend).catch((err: unknown) => {
        log.info({ containerId: pending.request.containerId, err }, 'streaming session failed');
        ws.terminate();
      });
    });
  }

  const server = createServer(onRequest);
  server.on('upgrade', onUpgrade);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const baseUrl = `http://${urlHost(address.address)}:${address.port}`;
  log.info({ url: baseUrl }, 'streaming server listening');

  const urlFor = (pending: Pending): string => `${baseUrl}/${pending.kind}/${tokens.insert(pending)}`;
  return {
    baseUrl,
    execUrl(request) {
      validateStreams(request);
      if (request.cmd.length === 0) throw new InvalidArgumentError('cmd must not be empty');
      return urlFor({ kind: 'exec', request });
    },
    attachUrl(request) {
      validateStreams(request);
      return urlFor({ kind: 'attach', request });
    },
    portForwardUrl(request) {
      if (request.podSandboxId === '') throw new InvalidArgumentError('missing required pod_sandbox_id');
      return urlFor({ kind: 'portforward', request });
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ws of wss.clients) ws.terminate();
      for (const socket of sockets) socket.destroy();
      wss.close();
      await closed;
    },
  };
}
