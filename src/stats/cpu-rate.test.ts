import { describe, expect, it } from 'vitest';
import { CpuRates } from './cpu-rate.js';

const S = 1_000_000_000n;

describe('CpuRates', () => {
  it('has no rate on the first sample, then Δusage/Δtime in nanocores', () => {
    const rates = new CpuRates();
    expect(rates.sample('c', 5n * S, 100n * S)).toBeUndefined();
    // 1.5 s of CPU over 2 s: 0.75 of a core.
    expect(rates.sample('c', 5n * S + (3n * S) / 2n, 102n * S)).toBe(750_000_000n);
  });

  it('answers the previous rate for a window under the minimum and keeps the older sample', () => {
    const rates = new CpuRates({ minWindowNanos: S });
    rates.sample('c', 0n, 0n);
    expect(rates.sample('c', 2n * S, 2n * S)).toBe(S);
    expect(rates.sample('c', 2n * S + 10n, 2n * S + 1_000_000n)).toBe(S);
    // The window is measured from the 2 s sample, not the 1 ms one.
    expect(rates.sample('c', 4n * S, 4n * S)).toBe(S);
  });

  it('starts over when the counter goes back (a new cgroup under the id)', () => {
    const rates = new CpuRates();
    rates.sample('c', 10n * S, 0n);
    expect(rates.sample('c', 1n * S, 5n * S)).toBeUndefined();
    expect(rates.sample('c', 2n * S, 7n * S)).toBe(S / 2n);
  });

  it('forgets ids, keeps only retained ones, and drops samples older than the maximum age', () => {
    const rates = new CpuRates({ maxAgeNanos: 600n * S });
    rates.sample('a', 0n, 0n);
    rates.sample('b', 0n, 0n);
    rates.sample('c', 0n, 0n);
    rates.forget('a');
    rates.retain(new Set(['b', 'x']));
    expect(rates.size).toBe(1);
    rates.sample('d', 0n, 601n * S);
    expect(rates.size).toBe(1);
  });
});
