import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';

describe('parseDuration (Go duration strings)', () => {
  it.each([
    ['4h0m0s', 4 * 3_600_000],
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['0', 0],
    ['0s', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '4 hours', '30', '5x', 's', '1h 30m'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
