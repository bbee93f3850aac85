import { link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { measureTree, WritableLayers, type Measure } from './writable-layer.js';

const tempDir = useTempDirs('icetray-layer-');
const MiB = 1024 * 1024;

describe('measureTree', () => {
  it('counts allocated blocks and entries, a hard link once, and never follows a symlink', async () => {
    const dir = await tempDir();
    const outside = await tempDir();
    await writeFile(join(outside, 'big'), Buffer.alloc(8 * MiB, 1));
    const empty = await measureTree(dir);
    await writeFile(join(dir, 'file'), Buffer.alloc(5 * MiB, 1));
    await link(join(dir, 'file'), join(dir, 'again'));
    await symlink(outside, join(dir, 'escape'));
    await symlink(join(outside, 'big'), join(dir, 'big'));
    const usage = await measureTree(dir);
    // The folder, the file (once for two names) and two symlinks.
    expect(usage?.inodes).toBe(4n);
    expect(usage?.bytes ?? 0n).toBeGreaterThanOrEqual((empty?.bytes ?? 0n) + BigInt(5 * MiB));
    expect(usage?.bytes ?? 0n).toBeLessThan(BigInt(6 * MiB));
  });

  it('walks a chain deeper than the folders it holds open, and a wide folder', async () => {
    const dir = await tempDir();
    let path = dir;
    for (let depth = 0; depth < 40; depth++) {
      path = join(path, 'd');
      await mkdir(path);
      await writeFile(join(path, 'f'), 'x');
    }
    for (let i = 0; i < 300; i++) await writeFile(join(dir, `wide-${i}`), '');
    expect((await measureTree(dir))?.inodes).toBe(1n + 40n * 2n + 300n);
  });

  it('answers undefined for a folder that is not there, and stops when aborted', async () => {
    expect(await measureTree(join(await tempDir(), 'missing'))).toBeUndefined();
    const dir = await tempDir();
    for (let i = 0; i < 50; i++) await writeFile(join(dir, `f${i}`), '');
    const aborted = AbortSignal.abort();
    expect((await measureTree(dir, aborted))?.inodes).toBe(1n);
  });
});

describe('WritableLayers', () => {
  const usage =
    (bytes: bigint): Measure =>
    () =>
      Promise.resolve({ bytes, inodes: 1n });

  it('re-measures a layer no sooner than the minimum interval', async () => {
    let now = 0;
    const layers = new WritableLayers({ minIntervalMs: 5_000, now: () => now });
    expect((await layers.usage('c', usage(10n)))?.bytes).toBe(10n);
    now = 4_999;
    expect((await layers.usage('c', usage(20n)))?.bytes).toBe(10n);
    now = 5_000;
    expect((await layers.usage('c', usage(30n)))?.bytes).toBe(30n);
  });

  it('answers within waitMs while a slow walk runs, and then waits ten times the walk before the next', async () => {
    let now = 0;
    const layers = new WritableLayers({ minIntervalMs: 1_000, waitMs: 20, now: () => now });
    let finish: (() => void) | undefined;
    const slow: Measure = () =>
      new Promise((resolve) => {
        finish = () => {
          now += 60_000;
          resolve({ bytes: 99n, inodes: 7n });
        };
      });
    const started = performance.now();
    expect(await layers.usage('c', slow)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1_000);
    finish?.();
    await sleep(10);
    expect((await layers.usage('c', usage(1n)))?.bytes).toBe(99n);
    // The walk "took" 60 s: the layer is not walked again for 600 s.
    now += 599_000;
    expect((await layers.usage('c', usage(2n)))?.bytes).toBe(99n);
    now += 1_000;
    expect((await layers.usage('c', usage(3n)))?.bytes).toBe(3n);
  });

  it('walks one layer at a time for the whole daemon', async () => {
    const layers = new WritableLayers({ waitMs: 200 });
    let running = 0;
    let most = 0;
    const measure: Measure = async () => {
      running++;
      most = Math.max(most, running);
      await sleep(5);
      running--;
      return { bytes: 1n, inodes: 1n };
    };
    await Promise.all(['a', 'b', 'c', 'd'].map((id) => layers.usage(id, measure)));
    expect(most).toBe(1);
  });

  it('drops a layer nobody asked for in 10 minutes', async () => {
    let now = 100_000;
    const layers = new WritableLayers({ now: () => now });
    await layers.usage('old', usage(1n));
    now += 601_000;
    await layers.usage('new', usage(1n));
    expect(layers.size).toBe(1);
  });

  it('forgets a removed container and aborts its walk', async () => {
    const layers = new WritableLayers({ waitMs: 5 });
    let signal: AbortSignal | undefined;
    const measure: Measure = async (s) => {
      signal = s;
      await sleep(50);
      return { bytes: 1n, inodes: 1n };
    };
    await layers.usage('c', measure);
    layers.forget('c');
    expect(signal?.aborted).toBe(true);
    expect(layers.size).toBe(0);
  });
});
