import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { NotFoundError } from '../../src/errors.js';
import { AttachableStdio } from '../../src/streaming/attach.js';
import type { StreamIO, StreamingBackend, TerminalSize } from '../../src/streaming/backend.js';

/**
 * A test-only pty: Node has none without a native addon, so python3's `pty` module runs the
 * command on a pseudo-terminal, relays stdin/stdout, and applies "cols rows" lines from fd 3
 * as window sizes (TIOCSWINSZ). Its exit code is the command's (128+n for a signal).
 */
const PTY_HELPER = `
import os, pty, sys, select, fcntl, termios, struct
pid, master = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fds, pending = [0, master, 3], b''
while master in fds:
    for fd in select.select(fds, [], [])[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if fd == master:
            if not data:
                fds.remove(master)
            else:
                os.write(1, data)
        elif not data:
            fds.remove(fd)
        elif fd == 0:
            os.write(master, data)
        else:
            pending += data
            while b'\\n' in pending:
                line, pending = pending.split(b'\\n', 1)
                cols, rows = (int(v) for v in line.split())
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
sys.exit(128 - code if code < 0 else code)
`;

/** Runs `argv` on a host pipe set, or on a python3 pty when `tty`; fd 3 takes window sizes. */
function start(argv: string[], tty: boolean): ChildProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('empty command');
  if (!tty) return spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  return spawn('python3', ['-c', PTY_HELPER, file, ...args], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
}

function sendSize(child: ChildProcess, size: TerminalSize): void {
  const control = child.stdio[3];
  if (control && 'write' in control) control.write(`${size.width} ${size.height}\n`);
}

function exitCodeOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    // 'close' (not 'exit'): all of its output has been read by then.
    child.once('close', (code, signal) => {
      resolve(code ?? 128 + (signal === null ? 0 : 15));
    });
  });
}

/** A long-running host process standing in for a container, with attachable stdio. */
export interface FakeContainer {
  id: string;
  child: ChildProcess;
  stdio: AttachableStdio;
  /** Everything it wrote, as the CRI log would have it. */
  log: Buffer[];
  exited: Promise<number>;
}

/**
 * The StreamingBackend tests use: "containers" are host processes, port-forward dials
 * 127.0.0.1 only. It records what the server handed it.
 */
export class TestBackend implements StreamingBackend {
  readonly containers = new Map<string, FakeContainer>();
  readonly resizes: TerminalSize[] = [];
  readonly execs: { containerId: string; cmd: string[]; tty: boolean }[] = [];
  readonly portForwards: { podSandboxId: string; port: number }[] = [];
  /** Commands whose session the server aborted (client gone, idle timeout). */
  readonly aborted: string[][] = [];

  /** Starts a fake container whose stdio can be attached to. */
  startContainer(id: string, argv: string[], options: { tty: boolean; stdin: boolean; stdinOnce: boolean }): FakeContainer {
    const child = start(argv, options.tty);
    const stdio = new AttachableStdio({
      stdin: options.stdin ? (child.stdin ?? undefined) : undefined,
      stdinOnce: options.stdinOnce,
      resize: (size) => {
        this.resizes.push(size);
        sendSize(child, size);
      },
    });
    if (!options.stdin) child.stdin?.end();
    const log: Buffer[] = [];
    for (const name of ['stdout', 'stderr'] as const) {
      child[name]?.on('data', (chunk: Buffer) => {
        log.push(chunk);
        stdio.output(name, chunk);
      });
    }
    const exited = exitCodeOf(child).finally(() => {
      stdio.exited();
    });
    const container = { id, child, stdio, log, exited };
    this.containers.set(id, container);
    return container;
  }

  async exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }> {
    this.execs.push({ containerId, cmd, tty: io.tty });
    const child = start(cmd, io.tty);
    const unsubscribe = io.resize.subscribe((size) => {
      this.resizes.push(size);
      sendSize(child, size);
    });
    const onAbort = (): void => {
      this.aborted.push(cmd);
      child.kill('SIGKILL');
    };
    io.signal.addEventListener('abort', onAbort);
    if (io.stdin && child.stdin) io.stdin.pipe(child.stdin);
    else child.stdin?.end();
    child.stdin?.on('error', () => undefined); // the command may exit without reading its input
    if (io.stdout) child.stdout?.pipe(io.stdout, { end: false });
    else child.stdout?.resume();
    if (io.stderr) child.stderr?.pipe(io.stderr, { end: false });
    else child.stderr?.resume();
    try {
      return { exitCode: await exitCodeOf(child) };
    } finally {
      unsubscribe();
      io.signal.removeEventListener('abort', onAbort);
      io.stdin?.unpipe();
    }
  }

  attach(containerId: string, io: StreamIO): Promise<void> {
    const container = this.containers.get(containerId);
    if (container === undefined) return Promise.reject(new NotFoundError(`container "${containerId}" not found`));
    return container.stdio.attach(io);
  }

  portForward(podSandboxId: string, port: number, socket: Duplex): Promise<void> {
    this.portForwards.push({ podSandboxId, port });
    return new Promise((resolve, reject) => {
      const target = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      target.once('error', reject);
      target.once('connect', () => {
        socket.pipe(target);
        target.pipe(socket);
      });
      target.once('close', () => {
        resolve();
      });
      socket.once('close', () => target.destroy());
    });
  }

  /** Kills every fake container and waits for them. */
  async close(): Promise<void> {
    for (const container of this.containers.values()) container.child.kill('SIGKILL');
    await Promise.all([...this.containers.values()].map((container) => container.exited.catch(() => 0)));
  }
}
