/**
 * Operations ordered per key (a sandbox or container id). `with` is exclusive: the kubelet may
 * stop and remove the same pod concurrently, and each must see the other's result, not its
 * half-way state. `shared` runs alongside other shared holders but never alongside an exclusive
 * one: creating and starting containers in a pod share it, stopping or removing the pod takes
 * it alone, so no container can be made in a pod that is going away.
 *
 * Waiters are served in arrival order: an exclusive holder waits for the shared ones before it,
 * and a shared one that comes after it waits for it (no starvation either way).
 */
export class KeyedLock {
  private readonly keys = new Map<string, KeyState>();

  with<T>(key: string, body: () => Promise<T>): Promise<T> {
    const state = this.enter(key);
    const current = Promise.allSettled([state.exclusive, ...state.shared]).then(body);
    state.exclusive = current;
    state.shared = [];
    return this.leave(key, state, current);
  }

  shared<T>(key: string, body: () => Promise<T>): Promise<T> {
    const state = this.enter(key);
    const current = Promise.allSettled([state.exclusive]).then(body);
    state.shared.push(current);
    return this.leave(key, state, current);
  }

  private enter(key: string): KeyState {
    const state = this.keys.get(key) ?? { exclusive: Promise.resolve(), shared: [], users: 0 };
    this.keys.set(key, state);
    state.users++;
    return state;
  }

  /** Forgets the key once no one holds or waits for it, so the map does not grow with every id ever seen. */
  private async leave<T>(key: string, state: KeyState, current: Promise<T>): Promise<T> {
    try {
      return await current;
    } finally {
      state.shared = state.shared.filter((p) => p !== current);
      if (--state.users === 0) this.keys.delete(key);
    }
  }
}

interface KeyState {
  /** The last exclusive operation queued. */
  exclusive: Promise<unknown>;
  /** The shared operations queued since then. */
  shared: Promise<unknown>[];
  /** Operations holding or waiting for the key. */
  users: number;
}
