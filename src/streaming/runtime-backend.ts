import { once } from 'node:events';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ContainerService } from '../containers/service.js';
import { FailedPreconditionError } from '../errors.js';
import { streamClosed } from '../os/child.js';
import { dialInNetns } from '../os/netns-dial.js';
import type { SandboxService } from '../sandbox/service.js';
import type { StreamingBackend } from './backend.js';
import { relay } from './relay.js';

/**
 * The streaming server's backend on icetray's real pods and containers: exec runs through the
 * container launcher, attach plugs into the running process's stdio, port-forward dials the
 * port on the pod's own loopback, inside its network namespace.
 */
export function runtimeBackend(containers: ContainerService, sandboxes: SandboxService): StreamingBackend {
  return {
    async exec(containerId, cmd, io) {
      // With a tty, nsexec gives the command a pseudo-terminal: all output arrives on stdout.
      const process = await containers.startExec(containerId, cmd, io.tty);
      const unsubscribe = process.resize === undefined ? undefined : io.resize.subscribe(process.resize);
      const onAbort = (): void => {
        process.stdin?.end();
        try {
          globalThis.process.kill(-process.namespacePid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      io.signal.addEventListener('abort', onAbort, { once: true });
      if (io.stdin !== undefined && process.stdin !== undefined) relay(io.stdin, process.stdin, { end: true });
      else process.stdin?.end();
      if (io.stdout !== undefined) relay(process.stdout, io.stdout);
      else process.stdout.resume();
      if (io.stderr !== undefined) relay(process.stderr, io.stderr);
      else process.stderr.resume();
      const [exit] = await Promise.all([process.exited, streamClosed(process.stdout), streamClosed(process.stderr)]);
      io.signal.removeEventListener('abort', onAbort);
      unsubscribe?.();
      return { exitCode: exit.exitCode };
    },

    attach(containerId, io) {
      return containers.attachable(containerId).attach(io);
    },

    async portForward(podSandboxId, port, socket: Duplex) {
      const sandbox = await sandboxes.get(podSandboxId);
      if (sandbox.state !== 'ready') throw new FailedPreconditionError(`sandbox "${sandbox.id}" is not ready`);
      const netns = sandbox.namespaces.net;
      if (netns === undefined) {
        // A hostNetwork pod's ports are the node's.
        const target = connect(port, '127.0.0.1');
        await once(target, 'connect');
        relay(socket, target, { end: true });
        relay(target, socket, { end: true });
        await Promise.all([once(target, 'close'), once(socket, 'close')]).catch(() => undefined);
        return;
      }
      const dialer = dialInNetns(netns, port);
      let problem = '';
      dialer.stderr?.on('data', (chunk: Buffer) => (problem += chunk.toString()));
      await new Promise<void>((resolve, reject) => {
        dialer.stderr?.on('data', () => {
          if (problem.startsWith('connected')) resolve();
        });
        dialer.once('exit', () =>
          reject(new FailedPreconditionError(`cannot connect to port ${port} in sandbox "${sandbox.id}": ${problem.trim()}`)),
        );
      });
      if (dialer.stdin !== null) relay(socket, dialer.stdin, { end: true });
      if (dialer.stdout !== null) relay(dialer.stdout, socket, { end: true });
      socket.once('close', () => dialer.kill('SIGKILL'));
      await once(dialer, 'exit');
    },
  };
}
