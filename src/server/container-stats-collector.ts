import { containersDir } from '../containers/state.js';
import { StatsCollector } from '../stats/collector.js';
import type { Runtime } from './runtime.js';

const collectors = new WeakMap<Runtime, StatsCollector>();

/**
 * The stats collector of a runtime, made on first use: the stats and metrics handlers share it, so
 * a container's previous CPU sample and its writable layer's measurement are one per runtime.
 */
export function statsCollectorOf(runtime: Runtime): StatsCollector {
  let collector = collectors.get(runtime);
  if (collector === undefined) {
    collector = new StatsCollector({
      cgroups: runtime.cgroups,
      events: runtime.events,
      containersDir: containersDir(runtime.loaded.config.rootDir),
      imageFsMountpoint: runtime.images.root,
    });
    collectors.set(runtime, collector);
  }
  return collector;
}
