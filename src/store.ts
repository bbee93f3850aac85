import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from './errors.js';
import { quote } from './validate.js';

/** A new 64-hex-digit id, the shape containerd and CRI-O use for sandboxes and containers. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

/**
 * Objects by id, found by full id or by a unique id prefix (as `crictl inspectp 3fa` does),
 * with names reserved so the same name cannot be created twice (CRI: AlreadyExists).
 */
export class IdStore<T extends { id: string }> {
  private readonly byId = new Map<string, T>();
  private readonly names = new Map<string, string>();

  constructor(private readonly kind: string) {}

  /** Reserves a name for an id; throws AlreadyExists naming the holder. Release with `releaseName`. */
  reserveName(name: string, id: string): void {
    const holder = this.names.get(name);
    if (holder !== undefined && holder !== id) {
      throw new AlreadyExistsError(`${this.kind} name ${quote(name)} is reserved for ${this.kind} "${holder}"`);
    }
    this.names.set(name, id);
  }

  releaseName(name: string): void {
    this.names.delete(name);
  }

  add(item: T): void {
    this.byId.set(item.id, item);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  /** The object whose id is, or uniquely starts with, `idOrPrefix`; undefined when none. */
  find(idOrPrefix: string): T | undefined {
    if (idOrPrefix === '') throw new InvalidArgumentError(`${this.kind} id must not be empty`);
    const exact = this.byId.get(idOrPrefix);
    if (exact !== undefined) return exact;
    let found: T | undefined;
    for (const [id, item] of this.byId) {
      if (!id.startsWith(idOrPrefix)) continue;
      if (found !== undefined) throw new InvalidArgumentError(`${this.kind} id prefix ${quote(idOrPrefix)} is ambiguous`);
      found = item;
    }
    return found;
  }

  /** Like `find`, but an unknown id is NotFound. */
  get(idOrPrefix: string): T {
    const item = this.find(idOrPrefix);
    // The id is cut: an id is the client's input, and a megabyte of it has no place in a log.
    if (item === undefined) throw new NotFoundError(`${this.kind} ${quote(idOrPrefix)} not found`);
    return item;
  }

  all(): T[] {
    return [...this.byId.values()];
  }
}
