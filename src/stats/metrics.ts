import { MetricType, type Metric, type MetricDescriptor } from '../generated/api.js';
import type { CgroupStats } from '../cgroups/stats.js';
import type { InterfaceCounters } from '../os/net-dev.js';

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
];

const START_TIME = {
  name: 'container_start_time_seconds',
  help: 'Start time of the container since unix epoch in seconds.',
} as const;

/** Every metric icetray sends, once each (ListMetricDescriptors: the list is fixed at start, api.proto). */
export const METRIC_DESCRIPTORS: readonly MetricDescriptor[] = (() => {
  const descriptors = new Map<string, MetricDescriptor>();
  for (const row of CGROUP_ROWS) {
    descriptors.set(row.name, { name: row.name, help: row.help, labelKeys: [...BASE_LABELS, ...Object.keys(row.extra ?? {})] });
  }
  for (const row of NETWORK_ROWS)
    descriptors.set(row.name, { name: row.name, help: row.help, labelKeys: [...BASE_LABELS, 'interface'] });
  descriptors.set(START_TIME.name, { ...START_TIME, labelKeys: [...BASE_LABELS] });
  return [...descriptors.values()];
})();

/**
 * A metric read now. Timestamp 0: "Timestamp should be 0 if the metric was gathered live"
 * (api.proto, Metric), which these are; the kubelet then stamps them itself.
 */
function metric(name: string, type: MetricType, labelValues: string[], value: bigint): Metric {
  return { name, timestamp: 0n, metricType: type, labelValues, value: { value } };
}

/** The CPU, memory and process metrics of one cgroup reading. */
export function cgroupMetrics(labels: SeriesLabels, stats: CgroupStats): Metric[] {
  const base = baseValues(labels);
  return CGROUP_ROWS.map((row) => metric(row.name, row.type, [...base, ...Object.values(row.extra ?? {})], row.value(stats)));
}

/** The network metrics of a pod's interfaces. */
export function networkMetrics(labels: SeriesLabels, interfaces: readonly InterfaceCounters[]): Metric[] {
  const base = baseValues(labels);
  return interfaces.flatMap((i) =>
    NETWORK_ROWS.map((row) => metric(row.name, MetricType.COUNTER, [...base, i.name], row.value(i))),
  );
}

/** When a container started (container_start_time_seconds); none before it has. */
export function startTimeMetrics(labels: SeriesLabels, startedAtNanos: bigint): Metric[] {
  if (startedAtNanos === 0n) return [];
  return [metric(START_TIME.name, MetricType.GAUGE, baseValues(labels), startedAtNanos / SECOND)];
}
