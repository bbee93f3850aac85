import { Client, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageServiceService, RuntimeServiceService } from '../../src/generated/api.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Bytes that are no protobuf message, sent to every method of both services: the answer is
 * INVALID_ARGUMENT (the client's fault), never INTERNAL (which grpc-js gives by default).
 */
const GARBAGE = [
  ['a truncated field', Buffer.from([0x0a, 0x05, 0x61])],
  ['an unterminated varint', Buffer.from([0x08, 0xff, 0xff])],
  ['a length past the end', Buffer.from([0x12, 0xff, 0xff, 0x03])],
] as const;

const METHODS = Object.values({ ...RuntimeServiceService, ...ImageServiceService }).map(
  (m) => [m.path, m.responseStream] as const,
);

describe('undecodable requests', () => {
  let t: TestServer;
  let client: Client;
  beforeAll(async () => {
    t = await startTestServer();
    client = new Client(`unix://${t.socket}`, credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await t.close();
  });

  /** Sends raw bytes and returns the status code of the answer. */
  function send(path: string, streaming: boolean, bytes: Buffer): Promise<number> {
    const identity = (b: Buffer): Buffer => b;
    return new Promise((resolve) => {
      if (!streaming) {
        client.makeUnaryRequest(path, identity, identity, bytes, (err: ServiceError | null) => resolve(err?.code ?? status.OK));
        return;
      }
      const call = client.makeServerStreamRequest(path, identity, identity, bytes);
      call.on('data', () => undefined);
      call.on('error', (err: ServiceError) => resolve(err.code));
      call.on('end', () => resolve(status.OK));
    });
  }

  it.each(GARBAGE)('answers %s with INVALID_ARGUMENT on every method', async (_, bytes) => {
    const codes = await Promise.all(METHODS.map(async ([path, streaming]) => [path, await send(path, streaming, bytes)]));
    expect(codes.filter(([, code]) => code !== status.INVALID_ARGUMENT)).toEqual([]);
  });
});
