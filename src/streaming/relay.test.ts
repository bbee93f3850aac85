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

  it('lets busy streams take turns, and other work runs between their chunks', async () => {
    const order: string[] = [];
    const [a, b] = [new PassThrough(), new PassThrough()];
    const done = Promise.all([collect(a, order, 'a'), collect(b, order, 'b')]);
    // Something else the event loop must serve (a gRPC call), arriving with the first chunk:
    // with pipe() it would wait for all 400 chunks (they flow without leaving the microtask
    // queue); relayed, it runs within the next turn or two.
    let otherWorkAt = -1;
    a.once('data', () => setImmediate(() => (otherWorkAt = order.length)));
    relay(Readable.from(chunks('a', 200)), a, { end: true });
    relay(Readable.from(chunks('b', 200)), b, { end: true });
    await done;
    expect(order.slice(0, 20)).toContain('a');
    expect(order.slice(0, 20)).toContain('b');
    expect(otherWorkAt).toBeGreaterThanOrEqual(1);
    expect(otherWorkAt).toBeLessThan(20);
  });

  it('stops when the destination fails or closes: no crash, and the source is not left paused', async () => {
    const source = new PassThrough();
    const destination = new PassThrough();
    relay(source, destination);
    destination.destroy(new Error('EPIPE: the command exited'));
    await new Promise((resolve) => setImmediate(resolve));
    source.write('more input');
    source.end();
    // The source drains to its end although nobody takes its data any more.
    await new Promise((resolve) => source.once('end', resolve));
    expect(source.readableEnded).toBe(true);
  });
});
