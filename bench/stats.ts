import { readFile } from 'node:fs/promises';

/** Percentile of a sample (nearest rank), in the sample's unit. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** An aligned text table (what `npm run bench` shows), one string with a line per row. */
export function formatTable(title: string, header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [title, line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Prints rows as an aligned text table. */
export function printTable(title: string, header: readonly string[], rows: readonly (readonly string[])[]): void {
  console.log(`\n${formatTable(title, header, rows)}`);
}

export function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

/** `a / b` as `1.23×`, or '' when either side is missing. */
export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '';
}

/**
 * A process's resident memory in KiB (VmRSS, or another /proc/PID/status field such as
 * RssAnon: the part that is its own, not file pages shared with other copies of the program).
 */
export async function rssKiB(pid: number, field = 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN);
}

/** Resident and proportional set size in KiB. */
export interface Memory {
  rss: number;
  pss: number;
}

/**
 * The Rss and Pss lines of /proc/PID/smaps_rollup. PSS splits each shared page among the processes
 * mapping it, so summing it over many pause or shim processes counts their shared code once.
 */
export function parseSmapsRollup(text: string): Memory {
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { rss: field('Rss'), pss: field('Pss') };
}

/** utime + stime in clock ticks from /proc/PID/stat (fields 14 and 15, counted after the `(comm)`). */
export function parseCpuTicks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}
