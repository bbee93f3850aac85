import { describe, expect, it } from 'vitest';
import { MetricType } from '../generated/api.js';
import type { CgroupStats } from '../cgroups/stats.js';
import { cgroupMetrics, METRIC_DESCRIPTORS, networkMetrics, startTimeMetrics, type SeriesLabels } from './metrics.js';

const stats: CgroupStats = {
  timestamp: 1n,
  cpuUsageNanos: 3_700_000_000n,
  cpuUserNanos: 2_100_000_000n,
  cpuSystemNanos: 1_600_000_000n,
  cpuPeriods: 5n,
  cpuThrottledPeriods: 1n,
  cpuThrottledNanos: 0n,
  memoryUsageBytes: 1000n,
  workingSetBytes: 800n,
  rssBytes: 600n,
  cacheBytes: 200n,
  mappedFileBytes: 50n,
  pageFaults: 9n,
  majorPageFaults: 2n,
  oomKills: 1n,
  processes: 4,
  processesLimit: 0n,
};
const labels: SeriesLabels = { pod: 'web', namespace: 'default', container: 'nginx', id: 'abc', image: 'nginx:1.27' };
const interfaces = [{ name: 'eth0', rxBytes: 10n, rxErrors: 0n, txBytes: 20n, txErrors: 1n }];

describe('cAdvisor-style metrics', () => {
  const all = [
    ...cgroupMetrics(labels, stats),
    ...networkMetrics(labels, interfaces),
    ...startTimeMetrics(labels, 5n * 10n ** 9n),
  ];
  const descriptors = new Map(METRIC_DESCRIPTORS.map((d) => [d.name, d]));

  it('describes every metric it sends once, with as many label values as label keys', () => {
    expect(descriptors.size).toBe(METRIC_DESCRIPTORS.length);
    for (const metric of all) {
      const descriptor = descriptors.get(metric.name);
      expect(descriptor, metric.name).toBeDefined();
      expect(metric.labelValues.length, metric.name).toBe(descriptor?.labelKeys.length);
    }
    expect(new Set(all.map((m) => m.name))).toEqual(new Set(descriptors.keys()));
  });

  it('carries cAdvisor names, the container labels in order, live timestamps and whole seconds', () => {
    const byName = (name: string) => all.filter((m) => m.name === name);
    expect(descriptors.get('container_cpu_usage_seconds_total')?.labelKeys).toEqual([
      'pod',
      'namespace',
      'container',
      'id',
      'image',
    ]);
    expect(byName('container_cpu_usage_seconds_total')).toEqual([
      {
        name: 'container_cpu_usage_seconds_total',
        timestamp: 0n,
        metricType: MetricType.COUNTER,
        labelValues: ['web', 'default', 'nginx', 'abc', 'nginx:1.27'],
        value: { value: 3n },
      },
    ]);
    expect(byName('container_memory_working_set_bytes')[0]?.metricType).toBe(MetricType.GAUGE);
    expect(byName('container_memory_working_set_bytes')[0]?.value?.value).toBe(800n);
    expect(byName('container_oom_events_total')[0]?.value?.value).toBe(1n);
    expect(byName('container_processes')[0]?.value?.value).toBe(4n);
    expect(byName('container_memory_failures_total').map((m) => m.labelValues.slice(5))).toEqual([
      ['pgfault', 'hierarchy'],
      ['pgmajfault', 'hierarchy'],
    ]);
    expect(byName('container_network_transmit_bytes_total')[0]?.labelValues).toEqual([
      'web',
      'default',
      'nginx',
      'abc',
      'nginx:1.27',
      'eth0',
    ]);
    expect(byName('container_start_time_seconds')[0]?.value?.value).toBe(5n);
    expect(startTimeMetrics(labels, 0n)).toEqual([]);
  });
});
