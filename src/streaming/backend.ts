import { EventEmitter } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

/** A terminal size as client-go sends it on the resize stream (`{"Width":80,"Height":24}`). */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The sizes a tty client reports. The latest is kept and replayed to a new listener, because
 * the client sends its first size right away, possibly before the backend has its pty.
 */
export class TerminalSizes {
  private readonly events = new EventEmitter();
  private last: TerminalSize | undefined;

  /** Calls `listener` with the latest size (if any) and every later one; returns an unsubscribe. */
  subscribe(listener: (size: TerminalSize) => void): () => void {
    this.events.on('resize', listener);
    if (this.last !== undefined) listener(this.last);
    return () => this.events.off('resize', listener);
  }

  get latest(): TerminalSize | undefined {
    return this.last;
  }

  /** Used by the streaming server when the client reports a size. */
  push(size: TerminalSize): void {
    this.last = size;
    this.events.emit('resize', size);
  }
}

/**
 * The client's streams for one exec or attach session. Present streams are exactly those the
 * CRI request asked for (`stderr` is never present with `tty`: a pty merges it into stdout).
 */
export interface StreamIO {
  /** Ends when the client closes its stdin (kubectl/crictl at EOF, or v5's close signal). */
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  /** Terminal sizes from the client; only ever fed when `tty` is true. */
  readonly resize: TerminalSizes;
  /**
   * Aborted when the client is gone (hung up, idle timeout, server closing). An exec backend
   * should then end the process's stdin; an attach backend must detach.
   */
  readonly signal: AbortSignal;
}

/**
 * What the streaming server needs from the runtime. The server owns the protocols; the
 * backend owns processes, ptys and network namespaces.
 */
export interface StreamingBackend {
  /**
   * Runs `cmd` in the container with `io` and resolves once it has exited **and** its output
   * has been written to `io.stdout`/`io.stderr` (wait for the child's 'close', not 'exit').
   * The server ends stdout/stderr afterwards if the backend did not. Rejecting reports an
   * internal error to the client (a non-zero exit is not an error: return its code).
   */
  exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }>;
  /**
   * Connects `io` to the running container's stdio and resolves when the container exits or
   * `io.signal` aborts (detach). With `stdin_once`, the container's stdin is closed when this
   * session's stdin ends (`AttachableStdio` in ./attach.ts does all of that).
   */
  attach(containerId: string, io: StreamIO): Promise<void>;
  /**
   * Connects `socket` to TCP `port` inside the sandbox's network namespace (the host's for a
   * host-network pod) and resolves when both directions are done. `socket` ending means the
   * client sent EOF: half-close the connection; end `socket` when the target does. `socket`
   * closing early means the client is gone: drop the connection. Rejecting sends the error
   * text to the client (e.g. connection refused).
   */
  portForward(podSandboxId: string, port: number, socket: Duplex): Promise<void>;
}
