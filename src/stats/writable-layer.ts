import type { Dir } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../log.js';
import { nowNanos } from '../time.js';

/**
 * What a container's writable layer takes on disk (ContainerStats.writable_layer), and how often
 * it is measured. The layer is a folder the container writes as it likes (its overlay upperdir,
 * or its whole rootfs where overlayfs is unavailable), so measuring it is walking a tree a hostile
 * container shapes: millions of files, deep nesting, hard links, symlinks, mounts. The rules:
 *
 * - The walk counts what `du -x` counts: st_blocks × 512 bytes and one inode per entry, hard links
 *   once, symlinks never followed (lstat), nothing on another filesystem.
 * - It streams each folder (opendir) and holds at most MAX_OPEN_DIRS folders open, so neither a
 *   folder of a million names nor a deep chain costs more than a few buffers and descriptors.
 * - Walks run one at a time for the whole daemon and each stat is awaited in turn, so a walk
 *   keeps at most one libuv thread busy: other RPCs' file work never queues behind it.
 * - Each layer is re-measured at most every `minIntervalMs`, and never sooner than
 *   `durationFactor` times its last walk took (a layer whose walk takes 10 s is measured at most
 *   every 100 s, a tenth of the time), as containerd serves snapshot usage from a cache its
 *   snapshotsSyncer refreshes every 10 s rather than walking in the RPC.
 * - An RPC waits at most `waitMs` for a walk in progress, then answers the last measurement with
 *   its own timestamp (or none yet): a slow layer makes its numbers older, never the call slower.
 */

/** Bytes and inodes a tree takes, and when it was measured (nanoseconds since the epoch). */
export interface LayerUsage {
  bytes: bigint;
  inodes: bigint;
  timestamp: bigint;
}

/** Folders held open at once by one walk; deeper folders wait on a list (their path only). */
const MAX_OPEN_DIRS = 16;
/**
 * Inodes remembered to count hard links once. Past this many, further links are counted again:
 * an over-count, which can only make a hostile container look bigger to the kubelet's eviction,
 * never let it hide usage.
 */
const MAX_REMEMBERED_LINKS = 100_000;

/** An error on an entry that is a race with the container, not a fault: it went, or changed kind. */
function vanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Measures a tree as `du -sx` would. Undefined when `root` does not exist;
 * entries that vanish while it walks are not counted. `signal` stops it early (the container was
 * removed): the count so far is returned.
 */
export async function measureTree(root: string, signal?: AbortSignal): Promise<Omit<LayerUsage, 'timestamp'> | undefined> {
  const top = await lstat(root, { bigint: true }).catch((err: unknown) => {
    if (vanished(err)) return undefined;
    throw err;
  });
  if (top === undefined) return undefined;
  const device = top.dev;
  const links = new Set<bigint>();
  let bytes = top.blocks * 512n;
  let inodes = 1n;
  const pending: string[] = top.isDirectory() ? [root] : [];
  const stopped = () => signal?.aborted === true;
  while (pending.length > 0 && !stopped()) {
    const start = pending.pop() ?? root;
    const open: { dir: Dir; path: string }[] = [];
    try {
      const first = await opendir(start, { bufferSize: 64 }).catch(() => undefined);
      if (first !== undefined) open.push({ dir: first, path: start });
      while (open.length > 0 && !stopped()) {
        const frame = open[open.length - 1];
        if (frame === undefined) break;
        const entry = await frame.dir.read().catch(() => null);
        if (entry === null) {
          open.pop();
          await frame.dir.close().catch(() => undefined);
          continue;
        }
        const path = join(frame.path, entry.name);
        const stats = await lstat(path, { bigint: true }).catch(() => undefined);
        // Another filesystem (a mount point) is not the layer's: neither counted nor entered.
        if (stats === undefined || stats.dev !== device) continue;
        if (!stats.isDirectory() && stats.nlink > 1n) {
          if (links.has(stats.ino)) continue;
          if (links.size < MAX_REMEMBERED_LINKS) links.add(stats.ino);
        }
        bytes += stats.blocks * 512n;
        inodes += 1n;
        if (!stats.isDirectory()) continue;
        if (open.length >= MAX_OPEN_DIRS) {
          pending.push(path);
          continue;
        }
        const dir = await opendir(path, { bufferSize: 64 }).catch(() => undefined);
        if (dir !== undefined) open.push({ dir, path });
      }
    } finally {
      for (const frame of open) await frame.dir.close().catch(() => undefined);
    }
  }
  return { bytes, inodes };
}

export interface WritableLayerOptions {
  /** The least time between two measurements of one layer. */
  minIntervalMs?: number;
  /** A layer is not re-measured sooner than this many times its last walk took. */
  durationFactor?: number;
  /** How long a call waits for a measurement in progress before it answers the previous one. */
  waitMs?: number;
  /** The clock, in milliseconds (tests pass a fake one). */
  now?: () => number;
}

interface Layer {
  usage: LayerUsage | undefined;
  measuring: Promise<void> | undefined;
  /** When (ms) it may be measured again. */
  nextAt: number;
  /** When (ms) a call last asked for it: one nobody asks for is dropped. */
  askedAt: number;
  /** Stops a walk in progress when the container is forgotten. */
  abort: AbortController;
}

/** A measurement of one layer: the tree's usage, or undefined when there is nothing to measure. */
export type Measure = (signal: AbortSignal) => Promise<Omit<LayerUsage, 'timestamp'> | undefined>;

/** The writable layers' usage, measured by the rules above and kept per container id. */
export class WritableLayers {
  private readonly layers = new Map<string, Layer>();
  /** Walks run one after another: this is the tail of the queue. */
  private queue: Promise<void> = Promise.resolve();
  private readonly minIntervalMs: number;
  private readonly durationFactor: number;
  private readonly waitMs: number;
  private readonly now: () => number;
  private lastSweep = 0;

  constructor(options: WritableLayerOptions = {}) {
    this.minIntervalMs = options.minIntervalMs ?? 5_000;
    this.durationFactor = options.durationFactor ?? 10;
    this.waitMs = options.waitMs ?? 500;
    this.now = options.now ?? Date.now;
  }

  /** The layer's usage as last measured, starting a new measurement (through `measure`) when one is due. */
  async usage(id: string, measure: Measure): Promise<LayerUsage | undefined> {
    this.sweep();
    let layer = this.layers.get(id);
    if (layer === undefined) {
      layer = { usage: undefined, measuring: undefined, nextAt: 0, askedAt: 0, abort: new AbortController() };
      this.layers.set(id, layer);
    }
    layer.askedAt = this.now();
    if (layer.measuring === undefined && this.now() >= layer.nextAt) {
      const current = layer;
      const run = this.queue.then(() => this.measure(id, current, measure));
      this.queue = run;
      current.measuring = run.finally(() => (current.measuring = undefined));
    }
    if (layer.measuring !== undefined) await waitAtMost(layer.measuring, this.waitMs);
    return layer.usage;
  }

  private async measure(id: string, layer: Layer, measure: Measure): Promise<void> {
    if (layer.abort.signal.aborted) return;
    const started = this.now();
    try {
      const usage = await measure(layer.abort.signal);
      layer.usage = usage === undefined ? undefined : { ...usage, timestamp: nowNanos() };
    } catch (err) {
      log.debug({ containerId: id, err }, 'failed to measure the writable layer');
    }
    const took = this.now() - started;
    layer.nextAt = this.now() + Math.max(this.minIntervalMs, took * this.durationFactor);
  }

  /** Forgets a container's layer (it was removed) and stops a walk of it in progress. */
  forget(id: string): void {
    this.layers.get(id)?.abort.abort();
    this.layers.delete(id);
  }

  /**
   * Drops layers nobody asked for in 10 minutes, at most once a minute: a stats call that was
   * reading a container as it was removed may have remembered it again after `forget`.
   */
  private sweep(): void {
    const now = this.now();
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [id, layer] of this.layers) if (now - layer.askedAt > 600_000) this.forget(id);
  }

  /** How many layers are remembered (tests check nothing is left behind). */
  get size(): number {
    return this.layers.size;
  }
}

/** Waits for `promise`, or `ms` at most; never rejects. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
