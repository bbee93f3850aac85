import { describe, expect, it } from 'vitest';
import { MetricType } from '../generated/api.js';
import type { CgroupStats } from '../cgroups/stats.js';
import {
  cgroupMetrics,
  filesystemMetrics,
  METRIC_DESCRIPTORS,
  networkMetrics,
  openFileMetrics,
  timeMetrics,
  type SeriesLabels,
} from './metrics.js';

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
  memoryFailcnt: 0n,
  memoryMaxUsageBytes: 1200n,
  kernelMemoryBytes: 30n,
  swapBytes: 0n,
  processes: 4,
  processesLimit: 0n,
  io: [{ major: 8, minor: 0, readBytes: 4096n, writeBytes: 8192n, reads: 1n, writes: 2n }],
  limits: {
    cpuPeriod: 100_000n,
    cpuQuota: 20_000n,
    cpuShares: 1024n,
    memoryBytes: 64n << 20n,
    memorySwapBytes: 64n << 20n,
    memoryReservationBytes: 0n,
  },
};
const labels: SeriesLabels = { pod: 'web', namespace: 'default', container: 'nginx', id: 'abc', image: 'nginx:1.27' };
const interfaces = [
  {
    name: 'eth0',
    rxBytes: 10n,
    rxPackets: 2n,
    rxErrors: 0n,
    rxDropped: 0n,
    txBytes: 20n,
    txPackets: 3n,
    txErrors: 1n,
    txDropped: 0n,
  },
];

describe('cAdvisor-style metrics', () => {
  const fs = { device: '/dev/vda', capacityBytes: 1n << 30n, inodes: 1000n, inodesFree: 900n };
  const all = [
    ...cgroupMetrics(labels, stats),
    ...networkMetrics(labels, interfaces),
    ...filesystemMetrics(labels, fs, { bytes: 5n << 20n, inodes: 12n, timestamp: 1n }),
    ...openFileMetrics(labels, { fds: 3n, sockets: 1n }),
    ...timeMetrics(labels, 5n * 10n ** 9n, 9n * 10n ** 9n),
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
    expect(byName('container_last_seen')[0]?.value?.value).toBe(9n);
    expect(timeMetrics(labels, 0n, 9n).map((m) => m.name)).toEqual(['container_last_seen']);
    expect(byName('container_fs_usage_bytes')[0]?.labelValues.at(-1)).toBe('/dev/vda');
    expect(byName('container_fs_usage_bytes')[0]?.value?.value).toBe(5n << 20n);
    expect(filesystemMetrics(labels, fs, undefined)).toEqual([]);
    expect(byName('container_spec_cpu_quota')[0]?.value?.value).toBe(20_000n);
    expect(byName('container_fs_writes_bytes_total')[0]?.labelValues.at(-1)).toBe('8:0');
    expect(byName('container_blkio_device_usage_total').map((m) => [m.labelValues.slice(5), m.value?.value])).toEqual([
      [['8:0', '8', '0', 'Read'], 4096n],
      [['8:0', '8', '0', 'Write'], 8192n],
    ]);
  });
});
