import { randomBytes } from 'node:crypto';
import { ResourceExhaustedError } from '../errors.js';

/** A token is good for one connection within this time (the kubelet's request cache TTL). */
export const TOKEN_TTL_MS = 60_000;
/** At most this many unused tokens at once (the kubelet's `maxInFlight`). */
export const MAX_IN_FLIGHT = 1000;

interface Entry<T> {
  request: T;
  expires: number;
}

/**
 * Single-use, expiring tokens for the URLs that Exec, Attach and PortForward return, so the
 * URL carries no request parameters (the kubelet's `requestCache`). A token is removed when it
 * is consumed, expired or not.
 */
export class TokenCache<T> {
  // A Map iterates in insertion order, and every entry lives equally long: the oldest is first.
  private readonly entries = new Map<string, Entry<T>>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Stores a request and returns its token (16 random bytes, URL-safe base64). */
  insert(request: T): string {
    this.collect();
    if (this.entries.size >= MAX_IN_FLIGHT) {
      throw new ResourceExhaustedError(`maximum number of in-flight streaming requests (${MAX_IN_FLIGHT}) exceeded`);
    }
    let token: string;
    do token = randomBytes(16).toString('base64url');
    while (this.entries.has(token));
    this.entries.set(token, { request, expires: this.now() + TOKEN_TTL_MS });
    return token;
  }

  /** The request for a token, once: undefined when unknown, already used or expired. */
  consume(token: string): T | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    this.entries.delete(token);
    return this.now() > entry.expires ? undefined : entry.request;
  }

  private collect(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) {
      if (entry.expires >= now) return;
      this.entries.delete(token);
    }
  }
}
