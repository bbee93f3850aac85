import { status, type handleServerStreamingCall } from '@grpc/grpc-js';
import { messageOf } from '../errors.js';
import { ContainerEventResponse, ContainerEventType, type GetEventsRequest } from '../generated/api.js';
import type { ContainerEventType as EventType } from '../events.js';
import { log } from '../log.js';
import { checkDecoded } from './rpc.js';
import type { Runtime } from './runtime.js';
import { toContainerStatus } from './container-convert.js';
import { toPodSandboxStatus } from './sandbox-convert.js';

const TYPES: Record<EventType, ContainerEventType> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

/**
 * GetContainerEvents: a stream of container lifecycle events, each with the pod's status and
 * its containers' statuses, as the kubelet's evented PLEG consumes them. It runs until the
 * client goes away.
 */
export function getContainerEvents(runtime: Runtime): handleServerStreamingCall<GetEventsRequest, ContainerEventResponse> {
  return (call) => {
    try {
      checkDecoded(call.request);
    } catch (err) {
      call.emit('error', { code: status.INVALID_ARGUMENT, details: messageOf(err) });
      return;
    }
    log.debug({ method: 'GetContainerEvents' }, 'event stream opened');
    const unsubscribe = runtime.events.subscribe((event) => {
      const sandbox = runtime.sandboxes.store.find(event.sandboxId);
      const containers = runtime.containers.list({ sandboxId: event.sandboxId });
      call.write(
        ContainerEventResponse.create({
          containerId: event.containerId,
          containerEventType: TYPES[event.type],
          createdAt: event.createdAt,
          podSandboxStatus: sandbox === undefined ? undefined : toPodSandboxStatus(sandbox),
          containersStatuses: containers.map(toContainerStatus),
        }),
      );
    });
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
  };
}
