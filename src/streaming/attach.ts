import type { Writable } from 'node:stream';
import type { StreamIO, TerminalSize } from './backend.js';

export interface AttachableStdioOptions {
  /** The container process's stdin, when it was created with `stdin: true`. */
  stdin?: Writable | undefined;
  /**
   * `stdin_once`: the container's stdin is closed when the first attached session that streams
   * stdin ends it or detaches (ContainerConfig.stdin_once in api.proto).
   */
  stdinOnce: boolean;
  /** Sets the container pty's window size; tty containers only. */
  resize?: ((size: TerminalSize) => void) | undefined;
}

interface Session {
  io: StreamIO;
  done: () => void;
}

/**
 * A running container's stdio, shared by any number of attach sessions (the role of
 * containerd's cio fan-out): the runtime hands every output chunk to `output` where it also
 * writes the CRI log, and `exited` when the process is gone. Clients may attach, detach and
 * re-attach while it runs; output produced while nobody is attached only reaches the log.
 */
export class AttachableStdio {
  private readonly sessions = new Set<Session>();
  private stdinClosed = false;
  private hasExited = false;

  constructor(private readonly options: AttachableStdioOptions) {
    options.stdin?.on('error', () => {
      this.stdinClosed = true; // the process closed its end: nothing more can be delivered
    });
  }

  /** Copies a chunk of the container's output to every attached client that asked for it. */
  output(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    for (const { io } of this.sessions) {
      // With a tty there is no stderr: the pty delivers everything on stdout.
      const target = stream === 'stdout' || io.tty ? io.stdout : io.stderr;
      if (target !== undefined && !target.writableEnded && !target.destroyed) target.write(chunk);
    }
  }

  /** The container exited: every session ends (the client then gets its status). */
  exited(): void {
    this.hasExited = true;
    for (const session of [...this.sessions]) session.done();
  }

  /** Serves one attach session until the container exits or the client detaches. */
  attach(io: StreamIO): Promise<void> {
    if (this.hasExited || io.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const { stdin } = io;
      const unsubscribe = io.tty && this.options.resize ? io.resize.subscribe(this.options.resize) : undefined;
      const onData = (chunk: Buffer): void => {
        const target = this.options.stdin;
        if (target !== undefined && !this.stdinClosed) target.write(chunk);
      };
      const onEnd = (): void => {
        this.closeStdinOnce();
      };
      const session: Session = {
        io,
        done: () => {
          if (!this.sessions.delete(session)) return;
          unsubscribe?.();
          stdin?.off('data', onData);
          stdin?.off('end', onEnd);
          io.signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        // A detach of the stdin-streaming session also counts as its end (stdin_once).
        if (stdin !== undefined) this.closeStdinOnce();
        session.done();
      };
      this.sessions.add(session);
      io.signal.addEventListener('abort', onAbort);
      stdin?.on('data', onData);
      stdin?.on('end', onEnd);
    });
  }

  private closeStdinOnce(): void {
    if (!this.options.stdinOnce || this.stdinClosed) return;
    this.stdinClosed = true;
    this.options.stdin?.end();
  }
}
