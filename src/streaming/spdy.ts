import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  FLAG_FIN,
  FrameReader,
  HeaderCodec,
  MAX_DATA_CHUNK,
  RstStatus,
  SpdyProtocolError,
  dataFrame,
  goAwayFrame,
  pingFrame,
  rstStreamFrame,
  synReplyFrame,
  type Frame,
  type Headers,
} from './spdy-frames.js';

/** How long a closing session waits for the client to hang up before dropping the socket. */
const CLOSE_GRACE_MS = 5_000;

/**
 * One SPDY stream opened by the client, as a Node Duplex: reading gives the client's DATA
 * frames (ending at its FIN), writing sends DATA frames, `end()` sends our FIN.
 */
export class SpdyStream extends Duplex {
  private resetSent = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    readonly headers: Headers,
  ) {
    super({ allowHalfOpen: true });
    // A write after the client is gone fails; the session's close already tells everyone, so
    // the error must not go unhandled and take the runtime down with it.
    this.on('error', () => undefined);
  }

  /** Abandons the stream both ways with RST_STREAM (spdystream's `Reset`). */
  reset(status: number = RstStatus.Cancel): void {
    if (!this.resetSent && !this.session.closed) {
      this.resetSent = true;
      this.session.send(rstStreamFrame(this.id, status));
    }
    this.destroy();
  }

  override _read(): void {
    this.session.resumeReading();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.resetSent || this.session.closed) {
      callback(new Error(`spdy stream ${this.id} is closed`));
      return;
    }
    this.session.activity();
    let flushed = true;
    for (let offset = 0; offset < chunk.length; offset += MAX_DATA_CHUNK) {
      flushed = this.session.send(dataFrame(this.id, chunk.subarray(offset, offset + MAX_DATA_CHUNK), false));
    }
    this.session.afterWrite(flushed, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.resetSent && !this.session.closed) this.session.send(dataFrame(this.id, Buffer.alloc(0), true));
    callback();
  }

  /** Data the client sent; false when the reader is full (the session then stops reading). */
  deliver(data: Buffer): boolean {
    return this.push(data);
  }

  /** The client's half-close (FIN) or reset: no more data will come. */
  remoteEnded(): void {
    this.push(null);
  }
}

export interface SpdySessionOptions {
  /**
   * Checks every stream the client opens, before the reply is sent. Throwing refuses the
   * stream with RST_STREAM, as the kubelet's stream handler does for a bad port header.
   */
  validate?: ((stream: SpdyStream) => void) | undefined;
  /** Closes the session after this long without DATA either way; 0 or undefined never. */
  idleTimeoutMs?: number | undefined;
}

/**
 * The server side of a SPDY/3.1 session over any byte duplex (an upgraded socket, or a
 * WebSocket tunnel for `SPDY/3.1+portforward.k8s.io`). Only the client opens streams here:
 * it creates one per channel (exec/attach) or two per forwarded connection (port-forward) and
 * waits for our SYN_REPLY. Pings are echoed; there is no flow control, as in spdystream.
 *
 * Events: 'stream' (SpdyStream) for each accepted stream, after its SYN_REPLY; 'timeout' when
 * the idle timeout closes it; 'close' once, after the transport is gone.
 */
export class SpdySession extends EventEmitter {
  private readonly codec = new HeaderCodec();
  private readonly reader = new FrameReader(this.codec);
  private readonly streams = new Map<number, SpdyStream>();
  private lastStreamId = 0;
  private paused = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private goingAway = false;
  closed = false;

  constructor(
    private readonly transport: Duplex,
    private readonly options: SpdySessionOptions,
  ) {
    super();
    transport.on('data', (chunk: Buffer) => {
      this.receive(chunk);
    });
    transport.on('end', () => {
      this.close();
    });
    transport.on('error', () => {
      this.destroy();
    });
    transport.on('close', () => {
      this.destroy();
    });
    const idle = options.idleTimeoutMs ?? 0;
    if (idle > 0) {
      this.idleTimer = setTimeout(() => {
        this.emit('timeout');
        this.destroy();
      }, idle);
      this.idleTimer.unref();
    }
  }

  /** Restarts the idle clock: called for every DATA frame in either direction. */
  activity(): void {
    if (!this.closed) this.idleTimer?.refresh();
  }

  /** Writes a frame; false when the transport's buffer is full. */
  send(frame: Buffer): boolean {
    if (this.closed) return false;
    return this.transport.write(frame);
  }

  /** Completes a stream write now, or once the transport has drained. */
  afterWrite(flushed: boolean, callback: (error?: Error | null) => void): void {
    if (flushed || this.closed) {
      callback();
      return;
    }
    const done = (): void => {
      this.transport.off('drain', done);
      this.off('close', done);
      callback();
    };
    this.transport.on('drain', done);
    this.on('close', done);
  }

  resumeReading(): void {
    if (this.paused) {
      this.paused = false;
      this.transport.resume();
    }
  }

  /**
   * Ends the session politely: GOAWAY, then our half of the transport. The socket is dropped
   * after a grace period if the client never hangs up.
   */
  close(): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.send(goAwayFrame(this.lastStreamId));
    this.transport.end();
    setTimeout(() => {
      this.destroy();
    }, CLOSE_GRACE_MS).unref();
  }

  /** Drops the transport and every stream at once. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    for (const stream of this.streams.values()) stream.destroy();
    this.streams.clear();
    this.transport.destroy();
    this.emit('close');
  }

  private receive(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      if (!(err instanceof SpdyProtocolError)) throw err;
      this.send(goAwayFrame(this.lastStreamId, 1));
      this.destroy();
      return;
    }
    for (const frame of frames) this.handle(frame);
  }

  private handle(frame: Frame): void {
    switch (frame.kind) {
      case 'synStream':
        this.openStream(frame.streamId, frame.headers, (frame.flags & FLAG_FIN) !== 0);
        return;
      case 'data': {
        const stream = this.streams.get(frame.streamId);
        if (stream === undefined) return; // already gone: spdystream drops these too
        if (frame.data.length > 0) {
          this.activity();
          if (!stream.deliver(frame.data) && !this.paused) {
            // Backpressure: a slow consumer stalls the whole connection, as in spdystream.
            this.paused = true;
            this.transport.pause();
          }
        }
        if ((frame.flags & FLAG_FIN) !== 0) stream.remoteEnded();
        return;
      }
      case 'rstStream': {
        const stream = this.streams.get(frame.streamId);
        if (stream === undefined) return;
        this.streams.delete(frame.streamId);
        stream.remoteEnded();
        stream.destroy();
        return;
      }
      case 'ping':
        // Client pings carry odd ids (client-go sends one every 5 s); ours would be even.
        if (frame.id % 2 === 1) this.send(pingFrame(frame.id));
        return;
      case 'goAway':
        this.close();
        return;
      case 'synReply':
      case 'headers':
      case 'ignored':
        return;
    }
  }

  private openStream(id: number, headers: Headers, fin: boolean): void {
    // Client stream ids are odd and strictly increasing (§2.3.2).
    if (id % 2 === 0 || id <= this.lastStreamId || this.goingAway) {
      this.send(rstStreamFrame(id, RstStatus.ProtocolError));
      return;
    }
    this.lastStreamId = id;
    const stream = new SpdyStream(this, id, headers);
    try {
      this.options.validate?.(stream);
    } catch {
      this.send(rstStreamFrame(id, RstStatus.RefusedStream));
      stream.destroy();
      return;
    }
    this.streams.set(id, stream);
    stream.on('close', () => {
      if (this.streams.get(id) === stream) this.streams.delete(id);
    });
    this.send(synReplyFrame(this.codec, id, new Map()));
    this.activity();
    if (fin) stream.remoteEnded();
    this.emit('stream', stream);
  }
}
