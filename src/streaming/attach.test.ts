import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AttachableStdio } from './attach.js';
import { TerminalSizes, type StreamIO } from './backend.js';

function collect(stream: PassThrough): () => string {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return () => text;
}

function session(options: { stdin?: boolean; tty?: boolean } = {}) {
  const controller = new AbortController();
  const stdin = options.stdin ? new PassThrough() : undefined;
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const io: StreamIO = {
    ...(stdin && { stdin }),
    stdout,
    ...(!options.tty && { stderr }),
    tty: options.tty ?? false,
    resize: new TerminalSizes(),
    signal: controller.signal,
  };
  return { io, stdin, out: collect(stdout), err: collect(stderr), detach: () => controller.abort() };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('AttachableStdio', () => {
  it('copies output to every attached session, and nothing from before it attached', async () => {
    const stdio = new AttachableStdio({ stdinOnce: false });
    stdio.output('stdout', Buffer.from('early\n'));
    const a = session();
    const b = session();
    const done = Promise.all([stdio.attach(a.io), stdio.attach(b.io)]);
    stdio.output('stdout', Buffer.from('out\n'));
    stdio.output('stderr', Buffer.from('err\n'));
    stdio.exited();
    await done;
    await tick();
    expect([a.out(), a.err(), b.out(), b.err()]).toEqual(['out\n', 'err\n', 'out\n', 'err\n']);
  });

  it('ends a session on detach while the container keeps its stdin, then lets another attach', async () => {
    const containerStdin = new PassThrough();
    const received = collect(containerStdin);
    const stdio = new AttachableStdio({ stdin: containerStdin, stdinOnce: false });
    const first = session({ stdin: true });
    const firstDone = stdio.attach(first.io);
    first.stdin?.write('one\n');
    first.detach();
    await firstDone;
    const second = session({ stdin: true });
    const secondDone = stdio.attach(second.io);
    second.stdin?.end('two\n');
    stdio.output('stdout', Buffer.from('still here\n'));
    await tick();
    expect(received()).toBe('one\ntwo\n');
    expect(containerStdin.writableEnded).toBe(false);
    expect(second.out()).toBe('still here\n');
    stdio.exited();
    await secondDone;
  });

  it('closes the container stdin when the first session ends its stdin (stdin_once)', async () => {
    const containerStdin = new PassThrough();
    const stdio = new AttachableStdio({ stdin: containerStdin, stdinOnce: true });
    const client = session({ stdin: true });
    const done = stdio.attach(client.io);
    client.stdin?.end('echo hi\n');
    await tick();
    expect(containerStdin.writableEnded).toBe(true);
    stdio.exited();
    await done;
  });

  it('passes terminal sizes to the pty of a tty container, starting with the latest one', async () => {
    const sizes: unknown[] = [];
    const stdio = new AttachableStdio({ stdinOnce: false, resize: (size) => sizes.push(size) });
    const client = session({ tty: true });
    client.io.resize.push({ width: 80, height: 24 });
    const done = stdio.attach(client.io);
    client.io.resize.push({ width: 100, height: 30 });
    stdio.output('stderr', Buffer.from('merged\n'));
    stdio.exited();
    await done;
    await tick();
    expect(sizes).toEqual([
      { width: 80, height: 24 },
      { width: 100, height: 30 },
    ]);
    expect(client.out()).toBe('merged\n');
  });

  it('returns at once for a container that has exited', async () => {
    const stdio = new AttachableStdio({ stdinOnce: false });
    stdio.exited();
    await expect(stdio.attach(session().io)).resolves.toBeUndefined();
  });
});
