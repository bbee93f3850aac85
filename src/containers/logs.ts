import { constants, type WriteStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { FailedPreconditionError, messageOf } from '../errors.js';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';

/**
 * The CRI container log format, which the kubelet and `crictl logs` read:
 *
 *   2016-10-06T00:17:09.669794202Z stdout F hello world
 *
 * an RFC 3339 time with nanoseconds, the stream, P for part of a line that was too long (the
 * rest follows in later entries) or F for a line's end, then the text. One writer per
 * container serialises stdout and stderr into one file.
 */
export type LogStream = 'stdout' | 'stderr';

/** Longest text in one entry: longer lines are cut into P entries (containerd's default, 16 KiB). */
export const MAX_LOG_LINE = 16 * 1024;

/** The wall clock in nanoseconds: Date's milliseconds once, then the monotonic hrtime from there,
 * so entries are ordered and carry real nanoseconds. */
const EPOCH_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** RFC 3339 with nanoseconds, UTC (e.g. 2016-10-06T00:17:09.669794202Z). */
export function logTimestamp(nanos = EPOCH_NS + process.hrtime.bigint()): string {
  const iso = new Date(Number(nanos / 1_000_000n)).toISOString(); // …09.669Z
  return `${iso.slice(0, 19)}.${String(nanos % 1_000_000_000n).padStart(9, '0')}Z`;
}

/** One CRI log entry (without the text's own newline). */
export function formatLogEntry(stream: LogStream, tag: 'P' | 'F', text: string, timestamp = logTimestamp()): string {
  return `${timestamp} ${stream} ${tag} ${text}\n`;
}

/** Parses an entry back (for tests and `explain`); undefined when the line is not one. */
export function parseLogEntry(line: string): { timestamp: string; stream: LogStream; tag: 'P' | 'F'; text: string } | undefined {
  const match = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(line.replace(/\n$/, ''));
  if (match === null) return undefined;
  return { timestamp: match[1] ?? '', stream: match[2] as LogStream, tag: match[3] as 'P' | 'F', text: match[4] ?? '' };
}

/**
 * Writes a container's output to its CRI log file, and reopens the file on request
 * (ReopenContainerLog: the kubelet renamed it to rotate it, new output goes to a new file).
 */
export class ContainerLogWriter {
  private file: WriteStream | undefined;
  private readonly pending = new Map<LogStream, string>();
  private readonly sources = new Set<Promise<void>>();

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<ContainerLogWriter> {
    const writer = new ContainerLogWriter(path);
    await writer.reopen();
    return writer;
  }

  /** Closes the current file and opens `path` anew (created if the rotator moved it away). */
  async reopen(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    // Not through a symlink, and only a regular file: a log path must not become a way to
    // append container output to some other file, a FIFO or a device. Root and its group read it.
    const handle = await open(
      this.path,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o640,
    ).catch((err: unknown) => {
      throw new FailedPreconditionError(`cannot open the log file ${this.path}: ${messageOf(err)}`, { cause: err });
    });
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new FailedPreconditionError(`the log path ${this.path} is not a regular file`);
    }
    const next = handle.createWriteStream();
    const previous = this.file;
    this.file = next;
    if (previous !== undefined) await new Promise<void>((resolve) => previous.end(resolve));
  }

  /** Copies a stream into the log until it ends; complete lines become F entries, an unfinished last one a P. */
  follow(stream: LogStream, source: Readable): Promise<void> {
    if (source.closed) return Promise.resolve(); // nothing more will come: close() must not wait for it
    const done = new Promise<void>((resolve) => {
      source.on('data', (chunk: Buffer) => this.write(stream, chunk.toString('utf8')));
      source.once('close', () => {
        this.flush(stream);
        resolve();
      });
    });
    this.sources.add(done);
    return done;
  }

  write(stream: LogStream, chunk: string): void {
    let buffered = (this.pending.get(stream) ?? '') + chunk;
    let newline = buffered.indexOf('\n');
    while (newline !== -1) {
      this.emit(stream, buffered.slice(0, newline), true);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf('\n');
    }
    // An unfinished line is held back, unless it is already too long for one entry.
    const cut = buffered.length - (buffered.length % MAX_LOG_LINE);
    if (cut > 0) this.emit(stream, buffered.slice(0, cut), false);
    this.pending.set(stream, buffered.slice(cut));
  }

  /**
   * Writes out what is left of a stream when it ends: a last line without its newline is a P
   * entry, as containerd writes it, so that readers (the kubelet's `FallbackToLogsOnError`
   * termination message, `crictl logs`) do not add a newline the program never printed.
   */
  flush(stream: LogStream): void {
    const rest = this.pending.get(stream) ?? '';
    if (rest !== '') this.emit(stream, rest, false);
    this.pending.delete(stream);
  }

  /** Writes text as entries of at most MAX_LOG_LINE: P for each piece, F for a line's last one. */
  private emit(stream: LogStream, text: string, endsLine: boolean): void {
    for (let start = 0; start < text.length || start === 0; start += MAX_LOG_LINE) {
      const piece = text.slice(start, start + MAX_LOG_LINE);
      const last = start + MAX_LOG_LINE >= text.length;
      this.file?.write(formatLogEntry(stream, last && endsLine ? 'F' : 'P', piece));
      if (last) break;
    }
  }

  /** Waits for the followed streams to end, then closes the file. */
  async close(): Promise<void> {
    await Promise.all(this.sources);
    const file = this.file;
    this.file = undefined;
    if (file !== undefined) await new Promise<void>((resolve) => file.end(resolve));
  }
}
