import { describe, expect, it } from 'vitest';
import { ResourceExhaustedError } from '../errors.js';
import { MAX_IN_FLIGHT, TOKEN_TTL_MS, TokenCache } from './tokens.js';

describe('TokenCache', () => {
  it('gives a URL-safe token that works exactly once', () => {
    const cache = new TokenCache<string>();
    const token = cache.insert('request');
    expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(cache.consume(token)).toBe('request');
    expect(cache.consume(token)).toBeUndefined();
    expect(cache.consume('unknown')).toBeUndefined();
  });

  it('lets a token expire after the TTL', () => {
    let now = 1_000;
    const cache = new TokenCache<string>(() => now);
    const token = cache.insert('request');
    now += TOKEN_TTL_MS + 1;
    expect(cache.consume(token)).toBeUndefined();
  });

  it('refuses more in-flight requests than the limit until old ones expire', () => {
    let now = 0;
    const cache = new TokenCache<number>(() => now);
    for (let i = 0; i < MAX_IN_FLIGHT; i++) cache.insert(i);
    expect(() => cache.insert(-1)).toThrow(ResourceExhaustedError);
    now += TOKEN_TTL_MS + 1;
    expect(() => cache.insert(-1)).not.toThrow();
  });
});
