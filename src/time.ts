import { setTimeout as sleep } from 'node:timers/promises';

/** Now, in nanoseconds since the epoch: CRI times are int64 nanoseconds (api.proto, created_at). */
export function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Node's timers hold at most 2^31 - 1 ms (24.8 days); a longer delay fires at once, with only a warning. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolves after `seconds`, however many: CRI timeouts are int64 seconds, and a client may send
 * one far past what a single timer holds. Longer waits are a chain of timers.
 */
export async function sleepSeconds(seconds: number, signal?: AbortSignal): Promise<void> {
  let left = Math.max(0, seconds) * 1000;
  while (left > 0 && signal?.aborted !== true) {
    const step = Math.min(left, MAX_TIMER_MS);
    await sleep(step, undefined, signal === undefined ? undefined : { signal }).catch(() => undefined);
    left -= step;
  }
}
