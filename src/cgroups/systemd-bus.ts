import dbus from 'dbus-next';
import { AlreadyExistsError, UnavailableError, messageOf } from '../errors.js';

/**
 * systemd's manager API over D-Bus (org.freedesktop.systemd1.Manager, see
 * https://www.freedesktop.org/software/systemd/man/latest/org.freedesktop.systemd1.html), the part
 * the systemd cgroup driver needs. Calls name their signatures instead of introspecting, and every
 * job is awaited to its JobRemoved result, as go-systemd does for runc.
 */

/** A unit property: its name and its D-Bus value. */
export type UnitProperty = [string, dbus.Variant];

export interface SystemdManager {
  /** Starts a transient unit (a slice or a scope) and waits for its job; AlreadyExistsError when it exists. */
  startTransientUnit(unit: string, properties: UnitProperty[]): Promise<void>;
  /** Stops a unit and waits for its job; a unit systemd does not know is already stopped. */
  stopUnit(unit: string): Promise<void>;
  /** Changes properties of a running unit until it stops (runtime=true, nothing written to /etc). */
  setUnitProperties(unit: string, properties: UnitProperty[]): Promise<void>;
  close(): void;
}

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';

/** How long a start or stop job may take: systemd's own default job timeout is far longer, a scope's is instant. */
const JOB_TIMEOUT_MS = 30_000;

function busError(what: string, err: unknown): Error {
  if (err instanceof dbus.DBusError && err.type === 'org.freedesktop.systemd1.UnitExists') {
    return new AlreadyExistsError(`failed to ${what}: ${err.text}`, { cause: err });
  }
  return new UnavailableError(`failed to ${what}: ${err instanceof dbus.DBusError ? err.text : messageOf(err)}`, { cause: err });
}

/** Connects to systemd through the D-Bus system bus at `address` ("unix:path=…"). */
export async function connectSystemd(address: string): Promise<SystemdManager> {
  // dbus-next's "session bus" is its name for a connection to any bus address.
  const bus = dbus.sessionBus({ busAddress: address });
  const results = new Map<string, string>();
  const waiters = new Map<string, (result: string) => void>();
  bus.on('message', (msg: dbus.Message) => {
    if (msg.type !== dbus.MessageType.SIGNAL || msg.interface !== MANAGER || msg.member !== 'JobRemoved') return;
    const [, job, , result] = msg.body as [number, string, string, string];
    const waiter = waiters.get(job);
    if (waiter === undefined) results.set(job, result);
    else waiter(result);
  });
  // A bus that cannot be reached fails the calls below; its later errors must not crash the server.
  bus.on('error', () => undefined);

  const call = async (member: string, signature: string, body: unknown[]): Promise<unknown[]> => {
    const reply = await bus.call(
      new dbus.Message({ destination: SYSTEMD, path: MANAGER_PATH, interface: MANAGER, member, signature, body }),
    );
    return (reply?.body ?? []) as unknown[];
  };

  /** Runs a call that queues a job and waits for the job's result. */
  const runJob = async (what: string, member: string, signature: string, body: unknown[]): Promise<void> => {
    let job: string;
    try {
      job = (await call(member, signature, body))[0] as string;
    } catch (err) {
      throw busError(what, err);
    }
    const result =
      results.get(job) ??
      (await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('timeout'), JOB_TIMEOUT_MS);
        waiters.set(job, (r) => {
          clearTimeout(timer);
          resolve(r);
        });
      }));
    results.delete(job);
    waiters.delete(job);
    if (result !== 'done') throw new UnavailableError(`failed to ${what}: systemd job ${job} ended "${result}"`);
  };

  try {
    await bus.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'AddMatch',
        signature: 's',
        body: [`type='signal',sender='${SYSTEMD}',interface='${MANAGER}',member='JobRemoved'`],
      }),
    );
    // systemd sends job signals only while some client is subscribed.
    await call('Subscribe', '', []);
  } catch (err) {
    bus.disconnect();
    throw new UnavailableError(`cannot reach systemd over D-Bus at ${address}: ${messageOf(err)}`, { cause: err });
  }

  return {
    startTransientUnit: (unit, properties) =>
      runJob(`start unit ${unit}`, 'StartTransientUnit', 'ssa(sv)a(sa(sv))', [unit, 'replace', properties, []]),
    stopUnit: async (unit) => {
      try {
        await runJob(`stop unit ${unit}`, 'StopUnit', 'ss', [unit, 'replace']);
      } catch (err) {
        const cause = (err as Error).cause;
        if (cause instanceof dbus.DBusError && cause.type === 'org.freedesktop.systemd1.NoSuchUnit') return;
        throw err;
      }
    },
    setUnitProperties: async (unit, properties) => {
      try {
        await call('SetUnitProperties', 'sba(sv)', [unit, true, properties]);
      } catch (err) {
        throw busError(`set properties of unit ${unit}`, err);
      }
    },
    close: () => bus.disconnect(),
  };
}
