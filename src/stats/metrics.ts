import { MetricType, type Metric, type MetricDescriptor } from '../generated/api.js';
import type { CgroupStats, DeviceIo } from '../cgroups/stats.js';
import type { InterfaceCounters } from '../os/net-dev.js';
import type { FilesystemInfo } from './filesystem.js';
import type { OpenFiles } from './process-files.js';
import type { LayerUsage } from './writable-layer.js';

/**
 * The cAdvisor-style metrics the kubelet serves on /metrics/cadvisor when it takes them from the
 * CRI (PodAndContainerStatsFromCRI): ListMetricDescriptors names them once, ListPodSandboxMetrics
 * gives their values. Names, help texts and labels are cAdvisor's, as containerd 2.x and CRI-O
 * spell them (containerd internal/cri/server/list_metric_descriptors.go), so dashboards and
 * alerts written against cAdvisor keep working.
 *
 * Each metric is one row of the tables below: its descriptor and its reading come from the same
 * row, so ListMetricDescriptors cannot omit a metric ListPodSandboxMetrics sends (the kubelet
 * drops a metric whose name it was not told about).
 *
 * Values are CRI UInt64Value: seconds counters are whole seconds (truncated), as containerd and
 * CRI-O send them; the kubelet turns the value into a float as it is.
 */

/** cAdvisor's labels of a container series, in label_keys order. */
export interface SeriesLabels {
  pod: string;
  namespace: string;
  /** '' for the pod's own series (its cgroup, its network), as cAdvisor labels a pod cgroup. */
  container: string;
  /** The container id, or the sandbox id for the pod's series. */
  id: string;
  image: string;
}

const BASE_LABELS = ['pod', 'namespace', 'container', 'id', 'image'] as const;

function baseValues(labels: SeriesLabels): string[] {
  return BASE_LABELS.map((key) => labels[key]);
}

interface CgroupRow {
  name: string;
  help: string;
  type: MetricType;
  /** Extra labels after the base ones, with their values for this row. */
  extra?: Record<string, string>;
  value: (stats: CgroupStats) => bigint;
}

const SECOND = 1_000_000_000n;

/** The metrics read from a cgroup (a container's, or the pod's for its own series). */
const CGROUP_ROWS: readonly CgroupRow[] = [
  {
    name: 'container_cpu_usage_seconds_total',
    help: 'Cumulative cpu time consumed in seconds.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuUsageNanos / SECOND,
  },
  {
    name: 'container_cpu_user_seconds_total',
    help: 'Cumulative user cpu time consumed in seconds.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuUserNanos / SECOND,
  },
  {
    name: 'container_cpu_system_seconds_total',
    help: 'Cumulative system cpu time consumed in seconds.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuSystemNanos / SECOND,
  },
  {
    name: 'container_cpu_cfs_periods_total',
    help: 'Number of elapsed enforcement period intervals.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuPeriods,
  },
  {
    name: 'container_cpu_cfs_throttled_periods_total',
    help: 'Number of throttled period intervals.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuThrottledPeriods,
  },
  {
    name: 'container_cpu_cfs_throttled_seconds_total',
    help: 'Total time duration the container has been throttled.',
    type: MetricType.COUNTER,
    value: (s) => s.cpuThrottledNanos / SECOND,
  },
  {
    name: 'container_memory_usage_bytes',
    help: 'Current memory usage in bytes, including all memory regardless of when it was accessed',
    type: MetricType.GAUGE,
    value: (s) => s.memoryUsageBytes,
  },
  {
    name: 'container_memory_working_set_bytes',
    help: 'Current working set in bytes.',
    type: MetricType.GAUGE,
    value: (s) => s.workingSetBytes,
  },
  {
    name: 'container_memory_rss',
    help: 'Size of RSS in bytes.',
    type: MetricType.GAUGE,
    value: (s) => s.rssBytes,
  },
  {
    name: 'container_memory_cache',
    help: 'Number of bytes of page cache memory.',
    type: MetricType.GAUGE,
    value: (s) => s.cacheBytes,
  },
  {
    name: 'container_memory_mapped_file',
    help: 'Size of memory mapped files in bytes.',
    type: MetricType.GAUGE,
    value: (s) => s.mappedFileBytes,
  },
  // cAdvisor's page-fault counters; v1 total_* and v2 memory.stat both count the whole subtree.
  {
    name: 'container_memory_failures_total',
    help: 'Cumulative count of memory allocation failures.',
    type: MetricType.COUNTER,
    extra: { failure_type: 'pgfault', scope: 'hierarchy' },
    value: (s) => s.pageFaults,
  },
  {
    name: 'container_memory_failures_total',
    help: 'Cumulative count of memory allocation failures.',
    type: MetricType.COUNTER,
    extra: { failure_type: 'pgmajfault', scope: 'hierarchy' },
    value: (s) => s.majorPageFaults,
  },
  {
    name: 'container_oom_events_total',
    help: 'Count of out of memory events observed for the container',
    type: MetricType.COUNTER,
    value: (s) => s.oomKills,
  },
  {
    name: 'container_processes',
    help: 'Number of processes running inside the container.',
    type: MetricType.GAUGE,
    value: (s) => BigInt(s.processes),
  },
  {
    name: 'container_threads_max',
    help: 'Maximum number of threads allowed inside the container, infinity if value is zero',
    type: MetricType.GAUGE,
    value: (s) => s.processesLimit,
  },
  // pids.current counts tasks, threads included.
  {
    name: 'container_threads',
    help: 'Number of threads running inside the container',
    type: MetricType.GAUGE,
    value: (s) => BigInt(s.processes),
  },
  {
    name: 'container_memory_failcnt',
    help: 'Number of memory usage hits limits',
    type: MetricType.COUNTER,
    value: (s) => s.memoryFailcnt,
  },
  {
    name: 'container_memory_max_usage_bytes',
    help: 'Maximum memory usage recorded in bytes',
    type: MetricType.GAUGE,
    value: (s) => s.memoryMaxUsageBytes,
  },
  {
    name: 'container_memory_kernel_usage',
    help: 'Size of kernel memory allocated in bytes.',
    type: MetricType.GAUGE,
    value: (s) => s.kernelMemoryBytes,
  },
  {
    name: 'container_memory_swap',
    help: 'Container swap usage in bytes.',
    type: MetricType.GAUGE,
    value: (s) => s.swapBytes,
  },
  {
    name: 'container_spec_cpu_period',
    help: 'CPU period of the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.cpuPeriod,
  },
  {
    name: 'container_spec_cpu_quota',
    help: 'CPU quota of the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.cpuQuota,
  },
  {
    name: 'container_spec_cpu_shares',
    help: 'CPU share of the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.cpuShares,
  },
  {
    name: 'container_spec_memory_limit_bytes',
    help: 'Memory limit for the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.memoryBytes,
  },
  {
    name: 'container_spec_memory_reservation_limit_bytes',
    help: 'Memory reservation limit for the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.memoryReservationBytes,
  },
  {
    name: 'container_spec_memory_swap_limit_bytes',
    help: 'Memory swap limit for the container.',
    type: MetricType.GAUGE,
    value: (s) => s.limits.memorySwapBytes,
  },
];

interface NetworkRow {
  name: string;
  help: string;
  value: (i: InterfaceCounters) => bigint;
}

/** The pod's network counters, per interface of its netns (containers share it: pod series only). */
const NETWORK_ROWS: readonly NetworkRow[] = [
  { name: 'container_network_receive_bytes_total', help: 'Cumulative count of bytes received', value: (i) => i.rxBytes },
  {
    name: 'container_network_receive_errors_total',
    help: 'Cumulative count of errors encountered while receiving',
    value: (i) => i.rxErrors,
  },
  { name: 'container_network_transmit_bytes_total', help: 'Cumulative count of bytes transmitted', value: (i) => i.txBytes },
  {
    name: 'container_network_transmit_errors_total',
    help: 'Cumulative count of errors encountered while transmitting',
    value: (i) => i.txErrors,
  },
  { name: 'container_network_receive_packets_total', help: 'Cumulative count of packets received', value: (i) => i.rxPackets },
  {
    name: 'container_network_receive_packets_dropped_total',
    help: 'Cumulative count of packets dropped while receiving',
    value: (i) => i.rxDropped,
  },
  {
    name: 'container_network_transmit_packets_total',
    help: 'Cumulative count of packets transmitted',
    value: (i) => i.txPackets,
  },
  {
    name: 'container_network_transmit_packets_dropped_total',
    help: 'Cumulative count of packets dropped while transmitting',
    value: (i) => i.txDropped,
  },
];

interface DeviceRow {
  name: string;
  help: string;
  value: (io: DeviceIo) => bigint;
}

/** Block I/O per device of a cgroup (label device = "major:minor"). */
const IO_ROWS: readonly DeviceRow[] = [
  { name: 'container_fs_reads_bytes_total', help: 'Cumulative count of bytes read', value: (io) => io.readBytes },
  { name: 'container_fs_reads_total', help: 'Cumulative count of reads completed', value: (io) => io.reads },
  { name: 'container_fs_writes_bytes_total', help: 'Cumulative count of bytes written', value: (io) => io.writeBytes },
  { name: 'container_fs_writes_total', help: 'Cumulative count of writes completed', value: (io) => io.writes },
];

const BLKIO = { name: 'container_blkio_device_usage_total', help: 'Blkio Device bytes usage' } as const;

interface FilesystemRow {
  name: string;
  help: string;
  value: (fs: FilesystemInfo, layer: LayerUsage) => bigint;
}

/** The writable layer's filesystem (label device: the filesystem's device). */
const FILESYSTEM_ROWS: readonly FilesystemRow[] = [
  {
    name: 'container_fs_usage_bytes',
    help: 'Number of bytes that are consumed by the container on this filesystem.',
    value: (_fs, layer) => layer.bytes,
  },
  {
    name: 'container_fs_limit_bytes',
    help: 'Number of bytes that can be consumed by the container on this filesystem.',
    value: (fs) => fs.capacityBytes,
  },
  { name: 'container_fs_inodes_total', help: 'Number of Inodes', value: (fs) => fs.inodes },
  { name: 'container_fs_inodes_free', help: 'Number of available Inodes', value: (fs) => fs.inodesFree },
];

const FILE_DESCRIPTORS = {
  name: 'container_file_descriptors',
  help: 'Number of open file descriptors for the container.',
} as const;
const SOCKETS = { name: 'container_sockets', help: 'Number of open sockets for the container.' } as const;
const START_TIME = {
  name: 'container_start_time_seconds',
  help: 'Start time of the container since unix epoch in seconds.',
} as const;
const LAST_SEEN = { name: 'container_last_seen', help: 'Last time a container was seen by the exporter' } as const;

/** Every metric icetray sends, once each (ListMetricDescriptors: the list is fixed at start, api.proto). */
export const METRIC_DESCRIPTORS: readonly MetricDescriptor[] = (() => {
  const descriptors = new Map<string, MetricDescriptor>();
  const add = (name: string, help: string, extra: readonly string[] = []) =>
    descriptors.set(name, { name, help, labelKeys: [...BASE_LABELS, ...extra] });
  for (const row of CGROUP_ROWS) add(row.name, row.help, Object.keys(row.extra ?? {}));
  for (const row of NETWORK_ROWS) add(row.name, row.help, ['interface']);
  for (const row of IO_ROWS) add(row.name, row.help, ['device']);
  add(BLKIO.name, BLKIO.help, ['device', 'major', 'minor', 'operation']);
  for (const row of FILESYSTEM_ROWS) add(row.name, row.help, ['device']);
  for (const m of [FILE_DESCRIPTORS, SOCKETS, START_TIME, LAST_SEEN]) add(m.name, m.help);
  return [...descriptors.values()];
})();

/**
 * A metric read now. Timestamp 0: "Timestamp should be 0 if the metric was gathered live"
 * (api.proto, Metric), which these are; the kubelet then stamps them itself.
 */
function metric(name: string, type: MetricType, labelValues: string[], value: bigint): Metric {
  return { name, timestamp: 0n, metricType: type, labelValues, value: { value } };
}

/** The CPU, memory, process, limit and block I/O metrics of one cgroup reading. */
export function cgroupMetrics(labels: SeriesLabels, stats: CgroupStats): Metric[] {
  const base = baseValues(labels);
  return [
    ...CGROUP_ROWS.map((row) => metric(row.name, row.type, [...base, ...Object.values(row.extra ?? {})], row.value(stats))),
    ...stats.io.flatMap((io) => {
      const device = `${io.major}:${io.minor}`;
      const perDevice = IO_ROWS.map((row) => metric(row.name, MetricType.COUNTER, [...base, device], row.value(io)));
      const usage = (operation: string, value: bigint) =>
        metric(BLKIO.name, MetricType.COUNTER, [...base, device, String(io.major), String(io.minor), operation], value);
      return [...perDevice, usage('Read', io.readBytes), usage('Write', io.writeBytes)];
    }),
  ];
}

/** The network metrics of a pod's interfaces. */
export function networkMetrics(labels: SeriesLabels, interfaces: readonly InterfaceCounters[]): Metric[] {
  const base = baseValues(labels);
  return interfaces.flatMap((i) =>
    NETWORK_ROWS.map((row) => metric(row.name, MetricType.COUNTER, [...base, i.name], row.value(i))),
  );
}

/** The writable layer on its filesystem; none until the layer was first measured. */
export function filesystemMetrics(labels: SeriesLabels, fs: FilesystemInfo, layer: LayerUsage | undefined): Metric[] {
  if (layer === undefined) return [];
  const values = [...baseValues(labels), fs.device];
  return FILESYSTEM_ROWS.map((row) => metric(row.name, MetricType.GAUGE, values, row.value(fs, layer)));
}

/** Open descriptors and sockets of the container's processes. */
export function openFileMetrics(labels: SeriesLabels, files: OpenFiles): Metric[] {
  const base = baseValues(labels);
  return [
    metric(FILE_DESCRIPTORS.name, MetricType.GAUGE, base, files.fds),
    metric(SOCKETS.name, MetricType.GAUGE, base, files.sockets),
  ];
}

/** When a container started (none before it has) and when it was last seen (now), in seconds. */
export function timeMetrics(labels: SeriesLabels, startedAtNanos: bigint, nowNanos: bigint): Metric[] {
  const base = baseValues(labels);
  return [
    ...(startedAtNanos === 0n ? [] : [metric(START_TIME.name, MetricType.GAUGE, base, startedAtNanos / SECOND)]),
    metric(LAST_SEEN.name, MetricType.GAUGE, base, nowNanos / SECOND),
  ];
}
