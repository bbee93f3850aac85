import { finished } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { AttachRequest, ExecRequest } from '../generated/api.js';
import { log } from '../log.js';
import { messageOf } from '../errors.js';
import { TerminalSizes, type StreamIO, type StreamingBackend, type TerminalSize } from './backend.js';
import type { SpdySession, SpdyStream } from './spdy.js';

/**
 * Exec and attach sessions (k8s.io/apimachinery `util/remotecommand`): which streams a client
 * opens, how the exit status is reported, for both SPDY and WebSocket transports.
 */

/** Protocol versions in the server's order of preference; client-go offers v5 first. */
export const REMOTE_COMMAND_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
] as const;
export type RemoteCommandProtocol = (typeof REMOTE_COMMAND_PROTOCOLS)[number];

/** v4 and later carry the exit status as a JSON metav1.Status; earlier ones only an error text. */
function hasJsonStatus(protocol: RemoteCommandProtocol): boolean {
  return protocol === 'v5.channel.k8s.io' || protocol === 'v4.channel.k8s.io';
}

/** v3 added the resize stream. */
export function supportsResize(protocol: RemoteCommandProtocol): boolean {
  return protocol !== 'v2.channel.k8s.io' && protocol !== 'channel.k8s.io';
}

/** A metav1.Status as the kubelet marshals it (field order of the Go struct). */
interface Status {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

const SUCCESS: Status = { metadata: {}, status: 'Success' };

/**
 * The non-zero exit status client-go turns into `CodeExitError` (its errorDecoderV4 reads the
 * `ExitCode` cause as an 8-bit number).
 */
export function exitStatus(cmd: string[], exitCode: number): Status {
  if (exitCode === 0) return SUCCESS;
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${cmd.join(' ')}], exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode & 0xff) }] },
  };
}

/** apimachinery's NewInternalError shape. */
export function internalErrorStatus(message: string): Status {
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${message}`,
    reason: 'InternalError',
    details: { causes: [{ message }] },
    code: 500,
  };
}

/** The bytes written on the error stream for a status, or none (pre-v4 success is silence). */
export function encodeStatus(protocol: RemoteCommandProtocol, status: Status): Buffer | undefined {
  if (hasJsonStatus(protocol)) return Buffer.from(JSON.stringify(status));
  return status.status === 'Success' ? undefined : Buffer.from(status.message ?? 'unknown error');
}

/**
 * Reads the resize stream: one JSON object per line (client-go's json.Encoder). Go decodes
 * field names case-insensitively, so both `Width` and `width` are taken.
 */
export function readResizes(stream: Readable, sizes: TerminalSizes): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line === '') continue;
      const size = parseSize(line);
      if (size !== undefined) sizes.push(size);
    }
  });
}

function parseSize(line: string): TerminalSize | undefined {
  try {
    const value = JSON.parse(line) as Record<string, unknown>;
    const width = value['Width'] ?? value['width'];
    const height = value['Height'] ?? value['height'];
    if (typeof width === 'number' && typeof height === 'number') return { width, height };
  } catch {
    // A malformed size is dropped, as the kubelet's decoder loop stops on it.
  }
  return undefined;
}

/** The streams of one session, whatever the transport. */
export interface RemoteCommandChannels {
  stdin?: Readable | undefined;
  stdout?: Writable | undefined;
  stderr?: Writable | undefined;
  resize?: Readable | undefined;
  /** Writes the status on the error channel (and closes that channel where it can). */
  writeStatus(data: Buffer | undefined): Promise<void>;
  /** Ends the connection once everything is written. */
  close(): void;
  /** Aborted when the connection is lost before the session ends. */
  lost: AbortSignal;
}

export type RemoteCommandRequest = { kind: 'exec'; request: ExecRequest } | { kind: 'attach'; request: AttachRequest };

async function endWritable(stream: Writable | undefined): Promise<void> {
  if (stream === undefined || stream.destroyed) return;
  if (!stream.writableEnded) stream.end();
  await finished(stream, { readable: false }).catch(() => undefined);
}

/**
 * Runs one exec or attach session to its end: the backend does the work; then stdout and
 * stderr are ended, the status goes on the error channel and the connection is closed, in that
 * order, so the client has all output before it learns the exit code (the kubelet's ServeExec).
 */
export async function runRemoteCommand(
  protocol: RemoteCommandProtocol,
  command: RemoteCommandRequest,
  channels: RemoteCommandChannels,
  backend: StreamingBackend,
): Promise<void> {
  const { request } = command;
  const resize = new TerminalSizes();
  if (channels.resize !== undefined) readResizes(channels.resize, resize);
  const io: StreamIO = {
    ...(channels.stdin !== undefined && { stdin: channels.stdin }),
    ...(channels.stdout !== undefined && { stdout: channels.stdout }),
    ...(channels.stderr !== undefined && !request.tty && { stderr: channels.stderr }),
    tty: request.tty,
    resize,
    signal: channels.lost,
  };
  let status: Status;
  try {
    if (command.kind === 'exec') {
      const { exitCode } = await backend.exec(command.request.containerId, command.request.cmd, io);
      status = exitStatus(command.request.cmd, exitCode);
    } else {
      await backend.attach(command.request.containerId, io);
      status = SUCCESS;
    }
  } catch (err) {
    const verb = command.kind === 'exec' ? 'executing command in' : 'attaching to';
    const message = `error ${verb} container: ${messageOf(err)}`;
    log.warn({ containerId: request.containerId, err }, message);
    status = internalErrorStatus(message);
  }
  if (channels.lost.aborted) return;
  await Promise.all([endWritable(channels.stdout), endWritable(channels.stderr)]);
  await channels.writeStatus(encodeStatus(protocol, status));
  channels.close();
}

/** The streams the client opens, by their `streamType` header (k8s.io/api core/v1 StreamType*). */
const STREAM_TYPES = ['error', 'stdin', 'stdout', 'stderr', 'resize'] as const;
type StreamType = (typeof STREAM_TYPES)[number];

/**
 * Collects the SPDY streams a remote-command client opens and resolves once all expected ones
 * are there: error, plus stdin/stdout/stderr as requested, plus resize for a tty from v3 on
 * (the kubelet counts the same way). Rejects after `timeoutMs` (StreamCreationTimeout).
 */
export function collectSpdyStreams(
  session: SpdySession,
  expected: number,
  timeoutMs: number,
): Promise<Map<StreamType, SpdyStream>> {
  return new Promise((resolve, reject) => {
    const streams = new Map<StreamType, SpdyStream>();
    const timer = setTimeout(() => {
      reject(new Error('timed out waiting for client to create streams'));
    }, timeoutMs);
    session.once('close', () => {
      clearTimeout(timer);
      reject(new Error('connection closed before all streams were created'));
    });
    session.on('stream', (stream: SpdyStream) => {
      const type = stream.headers.get('streamtype');
      if (!STREAM_TYPES.includes(type as StreamType) || streams.has(type as StreamType)) {
        stream.resume(); // unknown or duplicate: answered but unused, as in the kubelet
        return;
      }
      streams.set(type as StreamType, stream);
      if (streams.size === expected) {
        clearTimeout(timer);
        resolve(streams);
      }
    });
  });
}

/** Counts the streams a client opens for these request flags. */
export function expectedStreamCount(
  request: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean },
  protocol: RemoteCommandProtocol,
): number {
  let count = 1;
  if (request.stdin) count++;
  if (request.stdout) count++;
  if (request.stderr) count++;
  if (request.tty && supportsResize(protocol)) count++;
  return count;
}

/** Adapts collected SPDY streams to the transport-neutral channels. */
export function spdyChannels(
  session: SpdySession,
  streams: Map<StreamType, SpdyStream>,
  lost: AbortSignal,
): RemoteCommandChannels {
  const error = streams.get('error');
  // Streams we only write to still take the client's FIN: keep their readable side flowing.
  for (const type of ['error', 'stdout', 'stderr'] as const) streams.get(type)?.resume();
  return {
    stdin: streams.get('stdin'),
    stdout: streams.get('stdout'),
    stderr: streams.get('stderr'),
    resize: streams.get('resize'),
    async writeStatus(data) {
      if (error === undefined) return;
      if (data !== undefined) error.write(data);
      await endWritable(error);
    },
    close() {
      // Our FIN on stdin tells client-go's "wait for server to close stdin" to stop too.
      for (const type of ['stdin', 'resize'] as const) {
        const stream = streams.get(type);
        if (stream !== undefined && !stream.writableEnded) stream.end();
      }
      session.close();
    },
    lost,
  };
}
