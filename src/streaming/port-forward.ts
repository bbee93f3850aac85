import { log } from '../log.js';
import { messageOf } from '../errors.js';
import type { StreamingBackend } from './backend.js';
import type { SpdyStream } from './spdy.js';

/**
 * Port-forward (`portforward.k8s.io`, the kubelet's portforward/httpstream.go): for every
 * forwarded connection the client opens an `error` and a `data` stream with the same `port`
 * and `requestID` headers; once both are there, the data stream is connected to that port in
 * the pod. Failures are written as text on the error stream.
 */

export const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** Throws for a stream the kubelet would refuse: its `port` and `streamType` headers must be valid. */
export function validatePortForwardStream(stream: SpdyStream): void {
  const port = stream.headers.get('port') ?? '';
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Error(`invalid port header "${port}"`);
  }
  const type = stream.headers.get('streamtype');
  if (type !== 'data' && type !== 'error') throw new Error(`invalid stream type "${type ?? ''}"`);
}

/**
 * Pairs streams by request id and runs the backend for each complete pair. One instance per
 * connection; `accept` is the session's stream handler.
 */
export class PortForwardStreams {
  private readonly pairs = new Map<string, Pair>();

  constructor(
    private readonly podSandboxId: string,
    private readonly backend: StreamingBackend,
    private readonly creationTimeoutMs: number,
  ) {}

  accept(stream: SpdyStream): void {
    validatePortForwardStream(stream);
    const type = stream.headers.get('streamtype') === 'data' ? 'data' : 'error';
    const id = this.requestId(stream, type);
    let pair = this.pairs.get(id);
    if (pair === undefined) {
      const timer = setTimeout(() => {
        this.fail(id, `timed out waiting for streams of request ${id}`);
      }, this.creationTimeoutMs);
      timer.unref();
      pair = { timer };
      this.pairs.set(id, pair);
    }
    if (pair[type] !== undefined) {
      stream.end(`error processing stream for request ${id}: ${type} stream already assigned`);
      return;
    }
    pair[type] = stream;
    if (pair.data !== undefined && pair.error !== undefined) {
      clearTimeout(pair.timer);
      this.pairs.delete(id);
      void this.forward(pair.data, pair.error);
    }
  }

  /** Stops waiting for incomplete pairs (the connection is gone). */
  close(): void {
    for (const pair of this.pairs.values()) clearTimeout(pair.timer);
    this.pairs.clear();
  }

  /**
   * The `requestID` header, or for clients too old to send one the kubelet's guess: an error
   * stream's own id, a data stream's id minus 2.
   */
  private requestId(stream: SpdyStream, type: 'data' | 'error'): string {
    return stream.headers.get('requestid') ?? String(type === 'error' ? stream.id : stream.id - 2);
  }

  private fail(id: string, message: string): void {
    const pair = this.pairs.get(id);
    this.pairs.delete(id);
    pair?.error?.end(message);
    pair?.data?.end();
  }

  private async forward(data: SpdyStream, error: SpdyStream): Promise<void> {
    // The client never writes on the error stream; it only half-closes it.
    error.resume();
    const port = Number(data.headers.get('port'));
    try {
      await this.backend.portForward(this.podSandboxId, port, data);
    } catch (err) {
      const message = `error forwarding port ${port} to pod ${this.podSandboxId}, uid : ${messageOf(err)}`;
      log.info({ podSandboxId: this.podSandboxId, port }, message);
      if (!error.destroyed) error.write(message);
    }
    if (!data.destroyed && !data.writableEnded) data.end();
    if (!error.destroyed && !error.writableEnded) error.end();
  }
}
