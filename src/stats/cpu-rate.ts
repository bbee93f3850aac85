/**
 * usage_nano_cores, the CRI's instantaneous CPU use, from two readings of the cumulative
 * usage_core_nano_seconds: Δusage / Δtime × 1e9 (nanoseconds of CPU per second = nanocores), the way
 * containerd's getUsageNanoCores (internal/cri/server/container_stats_list.go) and cAdvisor's
 * CpuInst compute it. The previous reading of each container and pod is kept here, in memory.
 *
 * The first reading of an id has no rate: it is left unset, not 0, as containerd leaves it. The
 * kubelet bypasses its own cpuUsageCache when the runtime sets the field
 * (cri_stats_provider.go getAndUpdateContainerUsageNanoCores), so a 0 would be reported as
 * "idle"; unset lets it fall back to its own computation.
 */

/** One reading of a cumulative CPU counter. */
interface Sample {
  usageNanos: bigint;
  /** When it was read, in nanoseconds since the epoch. */
  timestamp: bigint;
  /** The rate computed when this sample was taken, if any. */
  rate: bigint | undefined;
}

export interface CpuRateOptions {
  /**
   * A window shorter than this gives no new rate: the previous one is answered and the older
   * sample kept, so two calls a few milliseconds apart (ListPodSandboxStats right after
   * ContainerStats) do not turn scheduler noise into a spike.
   */
  minWindowNanos?: bigint;
  /** A sample not refreshed for this long is dropped (the kubelet's cpuUsageCache keeps 10 minutes). */
  maxAgeNanos?: bigint;
}

const SECOND = 1_000_000_000n;

export class CpuRates {
  private readonly samples = new Map<string, Sample>();
  private readonly minWindow: bigint;
  private readonly maxAge: bigint;
  private lastSweep = 0n;

  constructor(options: CpuRateOptions = {}) {
    this.minWindow = options.minWindowNanos ?? SECOND;
    this.maxAge = options.maxAgeNanos ?? 600n * SECOND;
  }

  /** Records a reading of `id` and answers its CPU use in nanocores, or undefined when it cannot be known yet. */
  sample(id: string, usageNanos: bigint, timestamp: bigint): bigint | undefined {
    this.sweep(timestamp);
    const previous = this.samples.get(id);
    // A counter that went back is a new cgroup under the same id (or a reset): start over.
    if (previous === undefined || usageNanos < previous.usageNanos) {
      this.samples.set(id, { usageNanos, timestamp, rate: undefined });
      return undefined;
    }
    const window = timestamp - previous.timestamp;
    if (window <= 0n || window < this.minWindow) return previous.rate;
    const rate = ((usageNanos - previous.usageNanos) * SECOND) / window;
    this.samples.set(id, { usageNanos, timestamp, rate });
    return rate;
  }

  /** Forgets an id (its container or pod was removed). */
  forget(id: string): void {
    this.samples.delete(id);
  }

  /** Keeps only the ids given: a full listing tells which pods or containers still exist. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.samples.keys()) if (!ids.has(id)) this.samples.delete(id);
  }

  /** How many ids have a sample (tests check nothing is left behind). */
  get size(): number {
    return this.samples.size;
  }

  /** Drops samples nobody refreshed for maxAge, at most once a minute. */
  private sweep(now: bigint): void {
    if (now - this.lastSweep < 60n * SECOND) return;
    this.lastSweep = now;
    for (const [id, sample] of this.samples) if (now - sample.timestamp > this.maxAge) this.samples.delete(id);
  }
}
