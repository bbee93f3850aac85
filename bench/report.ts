import { formatTable, ms, percentile, ratio, type Memory } from './stats.js';

/** The three things measured side by side. */
export const TARGETS = ['icetray', 'containerd', 'floor'] as const;
export type Target = (typeof TARGETS)[number];

/** p50 and p90 of one operation's samples, in ms. */
export interface Summary {
  p50: number;
  p90: number;
  n: number;
}

export function summarize(samples: readonly number[]): Summary {
  return { p50: percentile(samples, 50), p90: percentile(samples, 90), n: samples.length };
}

/** Samples in ms by operation, then by target (the floor only has the operations it can do by hand). */
export type Samples = Map<string, Partial<Record<Target, number[]>>>;

export function addSample(samples: Samples, operation: string, target: Target, value: number): void {
  const row = samples.get(operation) ?? {};
  (row[target] ??= []).push(value);
  samples.set(operation, row);
}

export type Latency = Record<string, Partial<Record<Target, Summary>>>;

export function summarizeAll(samples: Samples): Latency {
  const out: Latency = {};
  for (const [operation, row] of samples) {
    const summaries: Partial<Record<Target, Summary>> = {};
    for (const target of TARGETS) {
      const values = row[target];
      if (values !== undefined && values.length > 0) summaries[target] = summarize(values);
    }
    out[operation] = summaries;
  }
  return out;
}

/** The latency table: p50/p90 per target and the two p50 ratios icetray/containerd and icetray/floor. */
export function latencyTable(title: string, latency: Latency): string {
  const cell = (summary: Summary | undefined): [string, string] =>
    summary === undefined ? ['', ''] : [ms(summary.p50), ms(summary.p90)];
  const rows = Object.entries(latency).map(([operation, row]) => [
    operation,
    ...cell(row.icetray),
    ...cell(row.containerd),
    ...cell(row.floor),
    ratio(row.icetray?.p50 ?? Number.NaN, row.containerd?.p50 ?? Number.NaN),
    ratio(row.icetray?.p50 ?? Number.NaN, row.floor?.p50 ?? Number.NaN),
  ]);
  return formatTable(
    title,
    ['operation', 'icetray p50', 'p90', 'containerd p50', 'p90', 'floor p50', 'p90', 'icetray/containerd', 'icetray/floor'],
    rows,
  );
}

/** Memory per pod, split as the runtimes spend it. */
export interface PodMemory {
  pause: Memory;
  /** icetray's nsexec monitors or containerd's shims (pod and container). */
  monitor: Memory;
  daemonGrowth: Memory;
  total: Memory;
}

/** Per-pod shares: the process sums and the daemon's growth divided by the pods alive. */
export function perPod(pods: number, pause: Memory, monitor: Memory, daemonGrowth: Memory): PodMemory {
  const each = (m: Memory): Memory => ({ rss: m.rss / pods, pss: m.pss / pods });
  const [p, m, d] = [each(pause), each(monitor), each(daemonGrowth)];
  return { pause: p, monitor: m, daemonGrowth: d, total: { rss: p.rss + m.rss + d.rss, pss: p.pss + m.pss + d.pss } };
}

export function sumMemory(list: readonly Memory[]): Memory {
  return list.reduce((a, b) => ({ rss: a.rss + b.rss, pss: a.pss + b.pss }), { rss: 0, pss: 0 });
}

export function kib(value: number): string {
  return `${Math.round(value).toLocaleString('en-US')} KiB`;
}

export function memoryTable(title: string, pods: number, memory: Record<'icetray' | 'containerd', PodMemory>): string {
  const parts = ['pause', 'monitor', 'daemonGrowth', 'total'] as const;
  const label = {
    pause: 'pause',
    monitor: 'monitor (icetray) / shim (containerd)',
    daemonGrowth: 'daemon growth',
    total: 'total',
  };
  return formatTable(
    title,
    ['per pod, ' + String(pods) + ' pods with one container', 'icetray RSS', 'PSS', 'containerd RSS', 'PSS', 'ratio (PSS)'],
    parts.map((part) => [
      label[part],
      kib(memory.icetray[part].rss),
      kib(memory.icetray[part].pss),
      kib(memory.containerd[part].rss),
      kib(memory.containerd[part].pss),
      ratio(memory.icetray[part].pss, memory.containerd[part].pss),
    ]),
  );
}
