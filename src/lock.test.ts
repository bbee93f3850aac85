import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { KeyedLock } from './lock.js';

/** Runs `ms` of pretend work, noting when it starts and ends. */
function work(trace: string[], name: string, ms: number) {
  return async () => {
    trace.push(`${name}+`);
    await sleep(ms);
    trace.push(`${name}-`);
  };
}

describe('KeyedLock', () => {
  it('runs exclusive operations on one key one after another', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    await Promise.all([lock.with('a', work(trace, 'x', 20)), lock.with('a', work(trace, 'y', 1))]);
    expect(trace).toEqual(['x+', 'x-', 'y+', 'y-']);
  });

  it('runs shared operations together, and an exclusive one waits for all of them', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    await Promise.all([
      lock.shared('a', work(trace, 's1', 20)),
      lock.shared('a', work(trace, 's2', 20)),
      lock.with('a', work(trace, 'x', 1)),
      lock.shared('a', work(trace, 's3', 1)),
    ]);
    expect(trace.slice(0, 2).sort()).toEqual(['s1+', 's2+']);
    // x only after both shared holders ended; s3, queued after x, only after x.
    expect(trace.indexOf('x+')).toBeGreaterThan(Math.max(trace.indexOf('s1-'), trace.indexOf('s2-')));
    expect(trace.indexOf('s3+')).toBeGreaterThan(trace.indexOf('x-'));
  });

  it('keeps keys apart, and a failing holder does not block the next', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    const failing = lock.with('a', () => Promise.reject(new Error('boom'))).catch((err: unknown) => err);
    await Promise.all([lock.with('b', work(trace, 'b', 10)), lock.with('a', work(trace, 'a', 1))]);
    expect(await failing).toEqual(new Error('boom'));
    expect(trace.indexOf('a-')).toBeLessThan(trace.indexOf('b-'));
  });

  it('forgets a key once nothing holds it, and still excludes when it is taken again at once', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    await lock.with('a', work(trace, 'x', 1));
    expect((lock as unknown as { keys: Map<string, unknown> }).keys.size).toBe(0);
    await Promise.all([lock.with('a', work(trace, 'y', 10)), lock.shared('a', work(trace, 'z', 1))]);
    expect(trace).toEqual(['x+', 'x-', 'y+', 'y-', 'z+', 'z-']);
  });
});
