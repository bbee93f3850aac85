import { constants, inflateRawSync } from 'node:zlib';

/**
 * SPDY/3.1 framing: the byte layout of frames and of compressed header blocks, nothing else.
 * client-go's exec, attach and port-forward speak it through moby/spdystream, which implements
 * the SPDY/3.1 draft (https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/).
 * npm's `spdy-transport` was last released in 2018 and is built for the `spdy` HTTP server, not
 * for taking over an upgraded socket, so this small codec is written here instead.
 */

export const SPDY_VERSION = 3;

/** Control frame types (draft 3.1 §2.6). */
export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes used here (§2.6.3). */
export const RstStatus = { ProtocolError: 1, InvalidStream: 2, RefusedStream: 3, Cancel: 5, InternalError: 6 } as const;

/** The largest DATA payload written at once; the format allows 2^24-1, smaller keeps latency fair. */
export const MAX_DATA_CHUNK = 32 * 1024;

export type Headers = Map<string, string>;

export type Frame =
  | { kind: 'data'; streamId: number; flags: number; data: Buffer }
  | { kind: 'synStream'; streamId: number; flags: number; headers: Headers }
  | { kind: 'synReply'; streamId: number; flags: number; headers: Headers }
  | { kind: 'headers'; streamId: number; flags: number; headers: Headers }
  | { kind: 'rstStream'; streamId: number; status: number }
  | { kind: 'ping'; id: number }
  | { kind: 'goAway'; lastGoodStreamId: number; status: number }
  /** SETTINGS and WINDOW_UPDATE: spdystream neither sends nor honours flow control, so they are read and dropped. */
  | { kind: 'ignored'; type: number };

/**
 * The zlib dictionary every SPDY/3 header block is compressed against (§2.6.10.1): the
 * length-prefixed words below, then the tail string. Its Adler-32 is 0xe3c6a7c2.
 */
const DICTIONARY_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via',
  'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url',
  'public', 'set-cookie', 'keep-alive', 'origin',
]; // prettier-ignore
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const HEADER_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.map((word) => lengthPrefixed(Buffer.from(word, 'latin1'))),
  Buffer.from(DICTIONARY_TAIL, 'latin1'),
]);

/** The empty stored block that ends a zlib sync flush. */
const SYNC_FLUSH_MARKER = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);

/** Deflate keeps a 32 KiB window: that is all a later block can refer back to. */
const WINDOW = 32 * 1024;

function lengthPrefixed(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

export function adler32(bytes: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function encodeHeaderBlock(headers: Headers): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]?.writeUInt32BE(headers.size);
  for (const [name, value] of headers) {
    // Names are lower case on the wire (§2.6.10); spdystream rejects anything else.
    parts.push(lengthPrefixed(Buffer.from(name.toLowerCase())), lengthPrefixed(Buffer.from(value)));
  }
  return Buffer.concat(parts);
}

function decodeHeaderBlock(block: Buffer): Headers {
  const headers: Headers = new Map();
  let offset = 0;
  const read = (): Buffer => {
    const length = block.readUInt32BE(offset);
    const start = offset + 4;
    offset = start + length;
    if (offset > block.length) throw new SpdyProtocolError('header block is truncated');
    return block.subarray(start, offset);
  };
  const count = block.readUInt32BE(0);
  offset = 4;
  for (let i = 0; i < count; i++) {
    const name = read().toString();
    // Several values of one name are NUL-separated (§2.6.10): the first is the one used here.
    const value = read().toString().split('\0')[0] ?? '';
    headers.set(name, value);
  }
  return headers;
}

export class SpdyProtocolError extends Error {}

/**
 * One direction's header compression context. SPDY keeps a single zlib stream per direction
 * for the whole connection, each header block ending in a sync flush (§2.6.10.1).
 *
 * Writing: stored (uncompressed) deflate blocks inside that zlib stream, each header block
 * closed by the empty stored block a sync flush writes. They are valid zlib for any inflater
 * and keep the writer synchronous; header blocks here are a few dozen bytes. The empty block
 * matters: Go's flate reader only hands out a block's bytes once it has seen what follows.
 *
 * Reading: each block is inflated as raw deflate with the window so far (dictionary + every
 * earlier block's output) as its preset dictionary: the peer's sync flush leaves every block
 * byte-aligned and self-contained except for back-references into that window.
 */
export class HeaderCodec {
  private wroteZlibHeader = false;
  private readZlibHeader = false;
  private window: Buffer = HEADER_DICTIONARY;

  encode(headers: Headers): Buffer {
    const raw = encodeHeaderBlock(headers);
    const parts: Buffer[] = [];
    if (!this.wroteZlibHeader) {
      // CMF 0x78 (deflate, 32 KiB window), FLG 0xbb (FDICT set, check bits), then the DICTID.
      const zlibHeader = Buffer.from([0x78, 0xbb, 0, 0, 0, 0]);
      zlibHeader.writeUInt32BE(adler32(HEADER_DICTIONARY), 2);
      parts.push(zlibHeader);
      this.wroteZlibHeader = true;
    }
    // A stored block holds at most 65535 bytes; a header block of a few dozen bytes needs one.
    let offset = 0;
    do {
      const chunk = raw.subarray(offset, offset + 0xffff);
      const stored = Buffer.alloc(5);
      // BFINAL=0, BTYPE=00 (stored), padded to the byte; then LEN and its one's complement.
      stored.writeUInt16LE(chunk.length, 1);
      stored.writeUInt16LE(~chunk.length & 0xffff, 3);
      parts.push(stored, chunk);
      offset += chunk.length;
    } while (offset < raw.length);
    parts.push(SYNC_FLUSH_MARKER);
    return Buffer.concat(parts);
  }

  decode(compressed: Buffer): Headers {
    let deflate = compressed;
    if (!this.readZlibHeader) {
      if (compressed.length < 2 || ((compressed[0] ?? 0) & 0x0f) !== 8) {
        throw new SpdyProtocolError('header block does not start a zlib stream');
      }
      const flags = compressed[1] ?? 0;
      const hasDictionary = (flags & 0x20) !== 0;
      if (hasDictionary && compressed.readUInt32BE(2) !== adler32(HEADER_DICTIONARY)) {
        throw new SpdyProtocolError('header block uses an unknown zlib dictionary');
      }
      deflate = compressed.subarray(hasDictionary ? 6 : 2);
      this.readZlibHeader = true;
    }
    let raw: Buffer;
    try {
      raw = inflateRawSync(deflate, { dictionary: this.window, finishFlush: constants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new SpdyProtocolError('header block does not inflate', { cause: err });
    }
    const joined = Buffer.concat([this.window, raw]);
    this.window = joined.length > WINDOW ? joined.subarray(joined.length - WINDOW) : joined;
    try {
      return decodeHeaderBlock(raw);
    } catch (err) {
      if (err instanceof SpdyProtocolError) throw err;
      throw new SpdyProtocolError('header block is malformed', { cause: err });
    }
  }
}

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([head, payload]);
}

function streamIdPayload(streamId: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(streamId & 0x7fffffff);
  return Buffer.concat([id, rest]);
}

export function dataFrame(streamId: number, data: Buffer, fin: boolean): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | data.length, 4);
  return Buffer.concat([head, data]);
}

export function synStreamFrame(codec: HeaderCodec, streamId: number, headers: Headers, fin = false): Buffer {
  const fixed = Buffer.alloc(6); // associated-to-stream-id 0, priority 0, slot 0
  return controlFrame(
    FrameType.SynStream,
    fin ? FLAG_FIN : 0,
    streamIdPayload(streamId, Buffer.concat([fixed, codec.encode(headers)])),
  );
}

export function synReplyFrame(codec: HeaderCodec, streamId: number, headers: Headers, fin = false): Buffer {
  return controlFrame(FrameType.SynReply, fin ? FLAG_FIN : 0, streamIdPayload(streamId, codec.encode(headers)));
}

export function rstStreamFrame(streamId: number, status: number): Buffer {
  const code = Buffer.alloc(4);
  code.writeUInt32BE(status);
  return controlFrame(FrameType.RstStream, 0, streamIdPayload(streamId, code));
}

export function pingFrame(id: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(id >>> 0);
  return controlFrame(FrameType.Ping, 0, payload);
}

export function goAwayFrame(lastGoodStreamId: number, status = 0): Buffer {
  const code = Buffer.alloc(4);
  code.writeUInt32BE(status);
  return controlFrame(FrameType.GoAway, 0, streamIdPayload(lastGoodStreamId, code));
}

/** The largest frame accepted from a peer: spdystream's own limit (2^24-1) is far beyond need. */
const MAX_FRAME_PAYLOAD = 1 << 20;

/**
 * Splits a byte stream into frames. `push` takes whatever the socket delivered and returns
 * every frame completed so far; partial frames wait for the next chunk.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly codec: HeaderCodec) {}

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    while (this.pending.length >= 8) {
      const length = this.pending.readUInt32BE(4) & 0xffffff;
      if (length > MAX_FRAME_PAYLOAD) throw new SpdyProtocolError(`frame of ${length} bytes is too large`);
      if (this.pending.length < 8 + length) break;
      const frame = this.pending.subarray(0, 8 + length);
      this.pending = this.pending.subarray(8 + length);
      frames.push(this.parse(frame));
    }
    return frames;
  }

  private parse(frame: Buffer): Frame {
    const first = frame.readUInt32BE(0);
    const flags = frame[4] ?? 0;
    const payload = frame.subarray(8);
    if ((first & 0x80000000) === 0) {
      return { kind: 'data', streamId: first & 0x7fffffff, flags, data: Buffer.from(payload) };
    }
    const version = (first >>> 16) & 0x7fff;
    if (version !== SPDY_VERSION) throw new SpdyProtocolError(`unsupported SPDY version ${version}`);
    const type = first & 0xffff;
    const need = (bytes: number): void => {
      if (payload.length < bytes) throw new SpdyProtocolError(`control frame ${type} is too short`);
    };
    switch (type) {
      case FrameType.SynStream:
        need(10);
        return {
          kind: 'synStream',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          flags,
          headers: this.codec.decode(payload.subarray(10)),
        };
      case FrameType.SynReply:
      case FrameType.Headers:
        need(4);
        return {
          kind: type === FrameType.SynReply ? 'synReply' : 'headers',
          streamId: payload.readUInt32BE(0) & 0x7fffffff,
          flags,
          headers: this.codec.decode(payload.subarray(4)),
        };
      case FrameType.RstStream:
        need(8);
        return { kind: 'rstStream', streamId: payload.readUInt32BE(0) & 0x7fffffff, status: payload.readUInt32BE(4) };
      case FrameType.Ping:
        need(4);
        return { kind: 'ping', id: payload.readUInt32BE(0) };
      case FrameType.GoAway:
        need(4);
        return {
          kind: 'goAway',
          lastGoodStreamId: payload.readUInt32BE(0) & 0x7fffffff,
          status: payload.length >= 8 ? payload.readUInt32BE(4) : 0,
        };
      default:
        return { kind: 'ignored', type };
    }
  }
}
