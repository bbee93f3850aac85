import { nowNanos } from './time.js';
import { EventEmitter } from 'node:events';

/** The container lifecycle events the kubelet's evented PLEG consumes (GetContainerEvents). */
export type ContainerEventType = 'created' | 'started' | 'stopped' | 'deleted';

export interface ContainerEvent {
  type: ContainerEventType;
  containerId: string;
  sandboxId: string;
  /** Nanoseconds since the epoch. */
  createdAt: bigint;
}

/** One bus per runtime: the container code publishes, each GetContainerEvents stream listens. */
export class ContainerEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every open GetContainerEvents stream is a listener; there is no fixed bound.
    this.emitter.setMaxListeners(0);
  }

  publish(type: ContainerEventType, containerId: string, sandboxId: string): void {
    const event: ContainerEvent = { type, containerId, sandboxId, createdAt: nowNanos() };
    this.emitter.emit('event', event);
  }

  /** Calls `listener` for each event until the returned function is called. */
  subscribe(listener: (event: ContainerEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
