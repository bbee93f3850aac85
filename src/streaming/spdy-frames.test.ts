import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  FLAG_FIN,
  FrameReader,
  HEADER_DICTIONARY,
  HeaderCodec,
  SpdyProtocolError,
  adler32,
  dataFrame,
  goAwayFrame,
  pingFrame,
  rstStreamFrame,
  synReplyFrame,
  synStreamFrame,
} from './spdy-frames.js';

/** The raw header block encoding of §2.6.10, written out by hand for the tests. */
function rawBlock(pairs: [string, string][]): Buffer {
  const parts = [Buffer.alloc(4)];
  parts[0]?.writeUInt32BE(pairs.length);
  for (const [name, value] of pairs) {
    for (const text of [name, value]) {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(Buffer.byteLength(text));
      parts.push(length, Buffer.from(text));
    }
  }
  return Buffer.concat(parts);
}

/** What a real SPDY peer (Go's compress/zlib) sends: one zlib stream, a sync flush per block. */
function syncFlushed(stream: Deflate | Inflate, input: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.write(input);
    stream.flush(constants.Z_SYNC_FLUSH, () => {
      stream.off('data', onData);
      resolve(Buffer.concat(chunks));
    });
  });
}

describe('the SPDY/3 header dictionary', () => {
  it('is the 1423 bytes of the draft, whose Adler-32 peers put in the zlib header', () => {
    expect(HEADER_DICTIONARY).toHaveLength(1423);
    expect(adler32(HEADER_DICTIONARY)).toBe(0xe3c6a7c2);
  });
});

describe('HeaderCodec', () => {
  it('decodes blocks that a real compressor wrote, including back-references to earlier blocks', async () => {
    const deflate = createDeflate({ dictionary: HEADER_DICTIONARY, level: 9 });
    const codec = new HeaderCodec();
    const first = await syncFlushed(
      deflate,
      rawBlock([
        ['streamtype', 'error'],
        ['port', '8080'],
        ['requestid', '0'],
      ]),
    );
    const second = await syncFlushed(
      deflate,
      rawBlock([
        ['streamtype', 'data'],
        ['port', '8080'],
        ['requestid', '0'],
      ]),
    );
    expect(codec.decode(first)).toEqual(
      new Map([
        ['streamtype', 'error'],
        ['port', '8080'],
        ['requestid', '0'],
      ]),
    );
    // The second block is mostly references into the first: it only decodes with the window kept.
    expect(second.length).toBeLessThan(first.length);
    expect(codec.decode(second).get('streamtype')).toBe('data');
    deflate.close();
  });

  it('writes blocks that a real inflater with the dictionary reads back, block by block', async () => {
    const codec = new HeaderCodec();
    const inflate = createInflate({ dictionary: HEADER_DICTIONARY });
    const headers = new Map([['streamType', 'stdout']]);
    await expect(syncFlushed(inflate, codec.encode(headers))).resolves.toEqual(rawBlock([['streamtype', 'stdout']]));
    await expect(syncFlushed(inflate, codec.encode(new Map()))).resolves.toEqual(rawBlock([]));
    inflate.close();
  });

  it('takes the first of several NUL-separated values', () => {
    const writer = new HeaderCodec();
    expect(new HeaderCodec().decode(writer.encode(new Map([['port', '80\u000081']])))).toEqual(new Map([['port', '80']]));
  });

  it('refuses a block compressed against another dictionary', async () => {
    const deflate = createDeflate({ dictionary: Buffer.from('not the spdy dictionary') });
    const block = await syncFlushed(deflate, rawBlock([]));
    expect(() => new HeaderCodec().decode(block)).toThrow(SpdyProtocolError);
    deflate.close();
  });
});

describe('FrameReader', () => {
  it('reassembles frames split anywhere, and reads every kind the server handles', () => {
    const client = new HeaderCodec();
    const wire = Buffer.concat([
      synStreamFrame(client, 1, new Map([['streamtype', 'stdin']])),
      dataFrame(1, Buffer.from('hello'), false),
      dataFrame(1, Buffer.alloc(0), true),
      pingFrame(7),
      rstStreamFrame(3, 5),
      synReplyFrame(client, 1, new Map()),
      goAwayFrame(9),
    ]);
    const reader = new FrameReader(new HeaderCodec());
    const frames = [...wire].flatMap((byte) => reader.push(Buffer.from([byte])));
    expect(frames).toEqual([
      { kind: 'synStream', streamId: 1, flags: 0, headers: new Map([['streamtype', 'stdin']]) },
      { kind: 'data', streamId: 1, flags: 0, data: Buffer.from('hello') },
      { kind: 'data', streamId: 1, flags: FLAG_FIN, data: Buffer.alloc(0) },
      { kind: 'ping', id: 7 },
      { kind: 'rstStream', streamId: 3, status: 5 },
      { kind: 'synReply', streamId: 1, flags: 0, headers: new Map() },
      { kind: 'goAway', lastGoodStreamId: 9, status: 0 },
    ]);
  });

  it('rejects another SPDY version', () => {
    const frame = pingFrame(1);
    frame.writeUInt16BE(0x8002, 0);
    expect(() => new FrameReader(new HeaderCodec()).push(frame)).toThrow('unsupported SPDY version 2');
  });
});
