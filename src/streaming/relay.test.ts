import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { relay } from './relay.js';

const chunks = (name: string, count: number): Buffer[] => Array.from({ length: count }, (_, i) => Buffer.from(`${name}${i};`));

function collect(stream: PassThrough, order: string[], name: string): Promise<string> {
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    order.push(name);
  });
  return new Promise((resolve) => stream.once('end', () => resolve(text)));
}

describe('relay', () => {
  it('copies every chunk in order and, with end, ends the destination', async () => {
    const out = new PassThrough();
    const text = collect(out, [], 'a');
    relay(Readable.from(chunks('a', 500)), out, { end: true });
    expect(await text).toBe(chunks('a', 500).join(''));
  });

  it('lets busy streams take turns, and a timer runs between their chunks', async () => {
    const order: string[] = [];
    const [a, b] = [new PassThrough(), new PassThrough()];
    const done = Promise.all([collect(a, order, 'a'), collect(b, order, 'b')]);
    relay(Readable.from(chunks('a', 200)), a, { end: true });
    relay(Readable.from(chunks('b', 200)), b, { end: true });
    // Something else the event loop must serve (a gRPC call): it gets its turn early.
    let timerAt = -1;
    setTimeout(() => (timerAt = order.length), 0);
    await done;
    expect(order.slice(0, 20)).toContain('a');
    expect(order.slice(0, 20)).toContain('b');
    expect(timerAt).toBeGreaterThanOrEqual(0);
    expect(timerAt).toBeLessThan(50);
  });
});
