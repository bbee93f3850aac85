/**
 * The error vocabulary of icetray's domain modules.
 *
 * Domain code (sandbox/, cgroups/, config/, …) throws these and knows nothing of gRPC;
 * `toStatus()` in server/rpc.ts is the one place that maps them to status codes.
 * Messages are lower-case and name the object and id: `sandbox "abc" not found`.
 */
export class IcetrayError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The object named in the request does not exist. */
export class NotFoundError extends IcetrayError {}

/** The object would clash with one that exists (a name already reserved). */
export class AlreadyExistsError extends IcetrayError {}

/** The request itself is wrong, whatever the state of the node. */
export class InvalidArgumentError extends IcetrayError {}

/** The request is valid, but the object is not in a state that allows it. */
export class FailedPreconditionError extends IcetrayError {}

/** A mechanism the request needs is missing or failing right now (CNI, systemd, …). */
export class UnavailableError extends IcetrayError {}

/** A limit ran out (disk, pods, addresses). */
export class ResourceExhaustedError extends IcetrayError {}

/** The operation ran longer than it was allowed to. */
export class DeadlineExceededError extends IcetrayError {}

/** The feature is knowingly not supported (said plainly, never faked). */
export class UnimplementedError extends IcetrayError {}

/** The error's message, for anything thrown (a non-Error throw included). */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
