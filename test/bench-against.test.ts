import { describe, expect, it } from 'vitest';
import { descendants, type Proc } from '../bench/daemon.js';
import { addSample, latencyTable, memoryTable, perPod, summarizeAll, type Samples } from '../bench/report.js';
import { formatTable, parseCpuTicks, parseSmapsRollup, percentile, ratio } from '../bench/stats.js';

// The pure parts of `npm run bench -- --against containerd`; the bench itself is not a timed test.

const SMAPS_ROLLUP = `55a0c0000000-7ffd3c5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:                1384 kB
Pss:                 422 kB
Pss_Dirty:           120 kB
Pss_Anon:            100 kB
Shared_Clean:        980 kB
Private_Dirty:       120 kB
Swap:                  0 kB
SwapPss:               0 kB
`;

describe('bench statistics', () => {
  it.each([
    [50, 5],
    [90, 9],
    [100, 10],
    [0, 1],
  ])('takes the nearest-rank %i th percentile of 1..10 as %i, whatever the order', (p, expected) => {
    expect(percentile([7, 3, 10, 1, 5, 2, 9, 4, 8, 6], p)).toBe(expected);
  });

  it('gives NaN for an empty sample, which a ratio then leaves blank', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(ratio(Number.NaN, 3)).toBe('');
    expect(ratio(3, 0)).toBe('');
    expect(ratio(3, 2)).toBe('1.50×');
  });

  it('summarizes samples per operation and target, leaving out targets without samples', () => {
    const samples: Samples = new Map();
    for (const value of [1, 2, 3, 4]) addSample(samples, 'RunPodSandbox', 'icetray', value);
    addSample(samples, 'RunPodSandbox', 'floor', 1);
    expect(summarizeAll(samples)).toEqual({
      RunPodSandbox: { icetray: { p50: 2, p90: 4, n: 4 }, floor: { p50: 1, p90: 1, n: 1 } },
    });
  });
});

describe('bench tables', () => {
  it('pads every column to its widest cell', () => {
    expect(formatTable('T', ['a', 'bb'], [['xxx', 'y']])).toBe(['T', '| a   | bb |', '|-----|----|', '| xxx | y  |'].join('\n'));
  });

  it('prints p50/p90 of each target and the p50 ratios to containerd and the floor', () => {
    const table = latencyTable('latency', {
      RunPodSandbox: {
        icetray: { p50: 100, p90: 150, n: 10 },
        containerd: { p50: 200, p90: 210, n: 10 },
        floor: { p50: 50, p90: 60, n: 10 },
      },
      Version: { icetray: { p50: 1, p90: 2, n: 10 }, containerd: { p50: 0.5, p90: 1, n: 10 } },
    });
    const [, , , run, version] = table.split('\n');
    expect(run?.split('|').map((cell) => cell.trim())).toEqual([
      '',
      'RunPodSandbox',
      '100.0 ms',
      '150.0 ms',
      '200.0 ms',
      '210.0 ms',
      '50.0 ms',
      '60.0 ms',
      '0.50×',
      '2.00×',
      '',
    ]);
    expect(
      version
        ?.split('|')
        .map((cell) => cell.trim())
        .slice(7, 10),
    ).toEqual(['', '2.00×', '']);
  });

  it('shares process memory and daemon growth out per pod and totals them', () => {
    const memory = perPod(4, { rss: 1000, pss: 400 }, { rss: 4000, pss: 800 }, { rss: 400, pss: 200 });
    expect(memory.total).toEqual({ rss: 250 + 1000 + 100, pss: 100 + 200 + 50 });
    const table = memoryTable('memory', 4, { icetray: memory, containerd: memory });
    expect(table).toContain('| total ');
    expect(table).toContain('1,350 KiB');
  });
});

describe('bench /proc parsing', () => {
  it('reads Rss and Pss from smaps_rollup, not the Pss_* lines', () => {
    expect(parseSmapsRollup(SMAPS_ROLLUP)).toEqual({ rss: 1384, pss: 422 });
  });

  it('gives NaN for a process that is gone (empty file)', () => {
    const gone = parseSmapsRollup('');
    expect(gone.rss).toBeNaN();
    expect(gone.pss).toBeNaN();
  });

  it('adds utime and stime from /proc/PID/stat, even when comm holds spaces and parentheses', () => {
    const stat = '4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 13 2 1 20 0 1 0 100 1000 50';
    expect(parseCpuTicks(stat)).toBe(50);
  });

  it('finds the processes below a daemon, also those started after it by its children', () => {
    const proc = (pid: number, ppid: number): Proc => ({ pid, ppid, comm: 'x', cmdline: '' });
    const all = [proc(30, 20), proc(10, 1), proc(20, 10), proc(40, 1)];
    expect(
      descendants(all, [10])
        .map((p) => p.pid)
        .sort(),
    ).toEqual([20, 30]);
  });
});
