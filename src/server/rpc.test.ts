import { status, type ServerWritableStream } from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../errors.js';
import { listStream } from './rpc.js';

/** What a Stream* call sent: its messages, then how it ended. */
function call(handler: ReturnType<typeof listStream<object, number, { items: number[] }>>) {
  return new Promise<{ messages: number[][]; error: { code: status } | undefined }>((resolve) => {
    const messages: number[][] = [];
    const fake = Object.assign(new EventEmitter(), {
      request: {},
      write: (message: { items: number[] }) => messages.push(message.items),
      end: () => resolve({ messages, error: undefined }),
    });
    fake.on('error', (error: { code: status }) => resolve({ messages, error }));
    handler(fake as unknown as ServerWritableStream<object, { items: number[] }>);
  });
}

describe('listStream (the Stream* form of List* RPCs)', () => {
  const stream = (items: () => Promise<number[]>) => listStream('StreamThings', items, (batch) => ({ items: batch }));

  it('sends every item exactly once, in messages of at most 100, then ends', async () => {
    const items = Array.from({ length: 250 }, (_, i) => i);
    const { messages, error } = await call(stream(() => Promise.resolve(items)));
    expect(error).toBeUndefined();
    expect(messages.map((m) => m.length)).toEqual([100, 100, 50]);
    expect(messages.flat()).toEqual(items);
  });

  it('ends without a message for an empty list (each message holds at least one item)', async () => {
    expect(await call(stream(() => Promise.resolve([])))).toEqual({ messages: [], error: undefined });
  });

  it('ends with the status of a failing list', async () => {
    const { messages, error } = await call(stream(() => Promise.reject(new NotFoundError('no such pod'))));
    expect(messages).toEqual([]);
    expect(error?.code).toBe(status.NOT_FOUND);
  });
});
