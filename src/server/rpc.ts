import {
  Metadata,
  status,
  type MethodDefinition,
  type ServiceDefinition,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerWritableStream,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  UnimplementedError,
  messageOf,
} from '../errors.js';
import { log } from '../log.js';

/**
 * A request whose bytes are not the message they should be. grpc-js answers a decoder's throw
 * with INTERNAL ("Error deserializing request"), as if icetray were broken; the client sent the
 * garbage, so `decodingSafely` hands this in its place and the handlers answer INVALID_ARGUMENT.
 */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

/** The same service definition, with every method's request decoder unable to throw. */
export function decodingSafely<T extends ServiceDefinition>(definition: T): T {
  const safe: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    safe[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new UndecodableRequest(messageOf(err));
        }
      },
    };
  }
  return safe as T;
}

/** Throws InvalidArgument for a request that could not be decoded (see UndecodableRequest). */
export function checkDecoded(request: unknown): void {
  if (request instanceof UndecodableRequest)
    throw new InvalidArgumentError(`the request is not a valid protobuf message: ${request.reason}`);
}

/** An RPC implementation: the request in, the response out; errors are thrown. */
export type Handler<Req, Res> = (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>;

/** The one switch from icetray's error vocabulary to a gRPC status code. */
export function toStatus(err: unknown): status {
  if (err instanceof InvalidArgumentError) return status.INVALID_ARGUMENT;
  if (err instanceof NotFoundError) return status.NOT_FOUND;
  if (err instanceof AlreadyExistsError) return status.ALREADY_EXISTS;
  if (err instanceof FailedPreconditionError) return status.FAILED_PRECONDITION;
  if (err instanceof UnavailableError) return status.UNAVAILABLE;
  if (err instanceof ResourceExhaustedError) return status.RESOURCE_EXHAUSTED;
  if (err instanceof DeadlineExceededError) return status.DEADLINE_EXCEEDED;
  if (err instanceof UnimplementedError) return status.UNIMPLEMENTED;
  return status.INTERNAL;
}

function errorResponse(code: status, message: string): ServerErrorResponse {
  return Object.assign(new Error(message), { code, details: message, metadata: new Metadata() });
}

/** The ids a request names, for the log line: never the whole request (it may hold secrets). */
function idsOf(request: unknown): Record<string, string> {
  const ids: Record<string, string> = {};
  if (typeof request !== 'object' || request === null) return ids;
  for (const key of ['podSandboxId', 'containerId'] as const) {
    const value: unknown = (request as Record<string, unknown>)[key];
    if (typeof value === 'string' && value !== '') ids[key] = value;
  }
  return ids;
}

/**
 * Turns an async handler into grpc-js's callback shape, and writes exactly one log line per
 * call: method, the ids involved, the gRPC code and the duration (containerd's `instrument`).
 */
export function unary<Req, Res>(method: string, handler: Handler<Req, Res>): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = performance.now();
    const done = (code: status, err?: unknown): void => {
      const line = { method, ...idsOf(call.request), code: status[code], ms: Math.round(performance.now() - started) };
      if (code === status.OK) log.debug(line, 'rpc');
      else if (code === status.INTERNAL) log.error({ ...line, err }, 'rpc failed');
      else log.info({ ...line, error: messageOf(err) }, 'rpc');
    };
    // Through a promise, so that a handler's synchronous throw is mapped like any rejection.
    Promise.resolve()
      .then(() => {
        checkDecoded(call.request);
        return handler(call.request, call);
      })
      .then(
        (response) => {
          done(status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const code = toStatus(err);
          done(code, err);
          callback(errorResponse(code, messageOf(err)));
        },
      );
  };
}

/** Items per message of a Stream* list (CRI: each message holds at least one item). */
const ITEMS_PER_MESSAGE = 100;

/**
 * The Stream* form of a List* RPC (KEP 5825, the kubelet's CRIListStreaming gate): the same
 * items, sent in messages of at most ITEMS_PER_MESSAGE, then end of stream — so a node with
 * many pods never exceeds gRPC's message size. An empty list sends no message at all.
 */
export function listStream<Req, Item, Res>(
  method: string,
  list: (request: Req) => Promise<Item[]>,
  wrap: (items: Item[]) => Res,
): handleServerStreamingCall<Req, Res> {
  return (call: ServerWritableStream<Req, Res>) => {
    const started = performance.now();
    const line = (code: status): Record<string, unknown> => ({
      method,
      code: status[code],
      ms: Math.round(performance.now() - started),
    });
    Promise.resolve()
      .then(() => {
        checkDecoded(call.request);
        return list(call.request);
      })
      .then(
        (items) => {
          for (let i = 0; i < items.length; i += ITEMS_PER_MESSAGE) call.write(wrap(items.slice(i, i + ITEMS_PER_MESSAGE)));
          call.end();
          log.debug(line(status.OK), 'rpc');
        },
        (err: unknown) => {
          const code = toStatus(err);
          log.info({ ...line(code), error: messageOf(err) }, 'rpc');
          call.emit('error', errorResponse(code, messageOf(err)));
        },
      );
  };
}

/** An RPC not built yet: UNIMPLEMENTED, naming the RPC — never a stub success. */
export function unimplemented<Req, Res>(method: string): handleUnaryCall<Req, Res> {
  return unary(method, () => Promise.reject(new UnimplementedError(`${method} is not implemented by icetray yet`)));
}

/** The server-streaming form of `unimplemented`. */
export function unimplementedStream<Req, Res>(method: string): handleServerStreamingCall<Req, Res> {
  return (call) => {
    if (call.request instanceof UndecodableRequest) {
      call.emit(
        'error',
        errorResponse(status.INVALID_ARGUMENT, `the request is not a valid protobuf message: ${call.request.reason}`),
      );
      return;
    }
    const message = `${method} is not implemented by icetray yet`;
    log.info({ method, code: 'UNIMPLEMENTED' }, 'rpc');
    call.emit('error', errorResponse(status.UNIMPLEMENTED, message));
  };
}
