/**
 * Work that concurrent callers share: the first caller of a key starts it, later ones wait for
 * the same result (two pods pulling one image download each layer once). Each caller waits under
 * its own AbortSignal; the work itself is aborted only when every caller has given up, so one
 * impatient pull does not fail the others.
 */
export class SharedWork {
  private readonly tasks = new Map<string, { promise: Promise<void>; controller: AbortController; waiters: number }>();

  run(key: string, signal: AbortSignal, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
    let task = this.tasks.get(key);
    if (task === undefined) {
      const controller = new AbortController();
      const created = { promise: Promise.resolve(), controller, waiters: 0 };
      created.promise = work(controller.signal).finally(() => {
        if (this.tasks.get(key) === created) this.tasks.delete(key);
      });
      // Every outcome is handled by the waiters; this stops an unwatched rejection.
      created.promise.catch(() => undefined);
      this.tasks.set(key, created);
      task = created;
    }
    const shared = task;
    shared.waiters += 1;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const leave = (): void => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        shared.waiters -= 1;
      };
      const onAbort = (): void => {
        if (settled) return;
        leave();
        if (shared.waiters === 0) {
          // Nobody waits any more: stop it, and let a later caller start afresh.
          if (this.tasks.get(key) === shared) this.tasks.delete(key);
          shared.controller.abort(signal.reason);
        }
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(
        () => {
          if (settled) return;
          leave();
          resolve();
        },
        (err: unknown) => {
          if (settled) return;
          leave();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}
