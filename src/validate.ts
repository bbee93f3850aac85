import { posix } from 'node:path';
import { InvalidArgumentError } from './errors.js';

/**
 * Checks for strings a CRI client sends, written once: every field is hostile until checked.
 * Each throws InvalidArgumentError naming the field, so bad input is answered as
 * INVALID_ARGUMENT before it reaches a spawn, a path or a file (where it would be INTERNAL, or
 * worse, work).
 */

/** Linux's PATH_MAX: no path the kernel accepts is longer. */
const PATH_MAX = 4096;
/** Linux's NAME_MAX: no file name (one part of a path) is longer, in bytes (ENAMETOOLONG). */
const NAME_MAX = 255;

/** The part of a path a client sent that no filesystem can hold, if any. */
function tooLongPart(path: string): string | undefined {
  return path.split('/').find((part) => Buffer.byteLength(part) > NAME_MAX);
}

/** Values in error messages are cut, so that a megabyte of input does not make a megabyte of log. */
export function quote(value: string, max = 80): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** A name, label or one-line value: no control characters (NUL, newline, …) and at most `max` characters. */
export function checkLine(value: string, what: string, max = 253): string {
  // eslint-disable-next-line no-control-regex
  if (value.length > max || /[\u0000-\u001f\u007f]/.test(value))
    throw new InvalidArgumentError(`${what} ${quote(value)} must be one line of at most ${String(max)} characters`);
  return value;
}

/** Text that becomes a C string (an argument, an environment entry): anything but NUL. */
export function checkNoNul(value: string, what: string): string {
  if (value.includes('\0')) throw new InvalidArgumentError(`${what} ${quote(value)} contains a NUL byte`);
  return value;
}

/**
 * An absolute path: starts with '/', no NUL, no "." or ".." parts, not longer than PATH_MAX, no
 * part longer than NAME_MAX. ".." is refused rather than resolved: in a path from a client it is
 * a mistake or an attack.
 */
export function checkAbsolutePath(value: string, what: string): string {
  checkNoNul(value, what);
  if (!value.startsWith('/') || value.length > PATH_MAX)
    throw new InvalidArgumentError(`${what} ${quote(value)} must be an absolute path`);
  if (value.split('/').some((part) => part === '.' || part === '..'))
    throw new InvalidArgumentError(`${what} ${quote(value)} must not contain "." or ".." parts`);
  const long = tooLongPart(value);
  if (long !== undefined)
    throw new InvalidArgumentError(`${what} has a part longer than ${String(NAME_MAX)} bytes: ${quote(long)}`);
  return value;
}

/**
 * A path relative to `dir` that stays inside it (a container's log_path inside the pod's
 * log_directory): not absolute, no "." or ".." parts, not empty. Returns the joined path.
 */
export function pathInside(dir: string, relative: string, what: string): string {
  checkNoNul(relative, what);
  if (relative === '' || relative.startsWith('/') || relative.length > PATH_MAX)
    throw new InvalidArgumentError(`${what} ${quote(relative)} must be a path relative to ${quote(dir)}`);
  if (relative.split('/').some((part) => part === '.' || part === '..'))
    throw new InvalidArgumentError(`${what} ${quote(relative)} must stay inside ${quote(dir)}: no "." or ".." parts`);
  const long = tooLongPart(relative);
  if (long !== undefined)
    throw new InvalidArgumentError(`${what} has a part longer than ${String(NAME_MAX)} bytes: ${quote(long)}`);
  return posix.join(dir, relative);
}

/**
 * Linux limits what exec(2) takes: each argument or environment string at most MAX_ARG_STRLEN
 * (32 pages), and all of them together a quarter of the stack limit (ARG_MAX, 2 MiB with the
 * usual 8 MiB stack). icetray's launcher adds its own arguments, so a client gets 1 MiB.
 */
const MAX_ARG_STRLEN = 32 * 4096;
const MAX_EXEC_BYTES = 1024 * 1024;

/** A command line and environment that exec(2) can take: no NUL, not too long (E2BIG). */
export function checkExecArgs(argv: readonly string[], env: readonly string[], what: string): void {
  let total = 0;
  for (const [list, kind] of [
    [argv, 'argument'],
    [env, 'environment entry'],
  ] as const) {
    for (const value of list) {
      checkNoNul(value, `${what} ${kind}`);
      const bytes = Buffer.byteLength(value) + 1;
      if (bytes > MAX_ARG_STRLEN)
        throw new InvalidArgumentError(`${what} ${kind} ${quote(value)} is longer than the kernel takes (128 KiB)`);
      total += bytes + 8;
    }
  }
  if (total > MAX_EXEC_BYTES)
    throw new InvalidArgumentError(
      `${what}: command and environment together are larger than 1 MiB (exec would fail with E2BIG)`,
    );
}
