import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStreamingCri, type StreamingCri } from './helpers/streaming-cri.js';
import { tmuxMissing, tmuxSession } from './helpers/tmux.js';
import { CRICTL, crictlMissing } from './helpers/tools.js';

/**
 * The real crictl (client-go remotecommand / portforward) against icetray's streaming server,
 * over both transports. The "containers" are host processes of the test backend.
 */
const missing = crictlMissing();

describe.skipIf(missing !== undefined)(`crictl streaming${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let cri: StreamingCri;
  beforeAll(async () => {
    cri = await startStreamingCri();
  });
  afterAll(async () => {
    await cri.close();
  });

  describe.each(['spdy', 'websocket'])('over %s', (transport) => {
    it('execs a command and returns its stdout and stderr separately', async () => {
      const result = await cri.crictl(['exec', '--transport', transport, 'ctr-1', 'sh', '-c', 'printf hello; printf oops >&2']);
      expect(result).toMatchObject({ code: 0, stdout: 'hello', stderr: 'oops' });
      expect(cri.backend.execs.at(-1)).toMatchObject({ containerId: 'ctr-1', tty: false });
    });

    it('reports a non-zero exit status through the v4 error channel', async () => {
      const result = await cri.crictl(['exec', '--transport', transport, 'ctr-1', 'sh', '-c', 'exit 3']);
      // client-go decoded the code from our status; crictl v1.37 then prints it and exits 1
      // for any streaming error (only `exec -s`, i.e. ExecSync, passes the code on).
      expect(result.stderr).toContain('command terminated with exit code 3');
      expect(result.code).toBe(1);
    });

    it('passes stdin to the command until EOF (-i)', async () => {
      const result = await cri.crictl(['exec', '-i', '--transport', transport, 'ctr-1', 'sh', '-c', 'tr a-z A-Z'], {
        stdin: 'shout\n',
      });
      expect(result).toMatchObject({ code: 0, stdout: 'SHOUT\n' });
    });

    it('streams a large output completely and in order', async () => {
      const result = await cri.crictl(['exec', '--transport', transport, 'ctr-1', 'sh', '-c', 'seq 1 100000']);
      expect(result.code).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(100000);
      expect(lines[99999]).toBe('100000');
    });

    it('attaches to a running container, passes input and ends when stdin_once closes its stdin', async () => {
      const id = `attach-${transport}`;
      const container = cri.backend.startContainer(id, ['sh'], { tty: false, stdin: true, stdinOnce: true });
      const result = await cri.crictl(['attach', '-i', '--transport', transport, id], { stdin: 'echo -n hello\n' });
      expect(result).toMatchObject({ code: 0, stdout: 'hello' });
      await expect(container.exited).resolves.toBe(0);
      expect(Buffer.concat(container.log).toString()).toBe('hello');
    });

    it("shows a running container's output, detaches and re-attaches", async () => {
      const id = `echoer-${transport}`;
      const container = cri.backend.startContainer(id, ['sh', '-c', 'while read line; do echo "got $line"; done; echo bye'], {
        tty: false,
        stdin: true,
        stdinOnce: false,
      });
      // The test feeds the container's stdin itself, as if it produced output on its own.
      const feed = (line: string): NodeJS.Timeout => setInterval(() => container.child.stdin?.write(`${line}\n`), 100);
      const first = cri.crictlProcess(['attach', '--transport', transport, id]);
      let feeding = feed('one');
      await first.ready(/got one/).finally(() => clearInterval(feeding));
      // crictl attach ignores SIGINT/SIGTERM without a tty: the client vanishing is the detach.
      await first.stop('SIGKILL');
      expect(container.child.exitCode).toBeNull();

      const second = cri.crictlProcess(['attach', '--transport', transport, id]);
      feeding = feed('two');
      await second.ready(/got two/).finally(() => clearInterval(feeding));
      container.child.stdin?.end();
      // The container's exit ends the session cleanly: status Success, crictl exits 0.
      await expect(second.exited()).resolves.toBe(0);
      expect(second.output()).toContain('bye');
      expect(second.output()).not.toContain('got one');
      expect(Buffer.concat(container.log).toString()).toMatch(/got one\n(got .*\n)*bye\n$/);
    });
  });

  it('serves many sessions at once without mixing their output', async () => {
    const runs = Array.from({ length: 20 }, (_, i) =>
      cri.crictl(['exec', '--transport', i % 2 === 0 ? 'spdy' : 'websocket', 'ctr-1', 'sh', '-c', `seq ${i} 5000`]),
    );
    const results = await Promise.all(runs);
    results.forEach((result, i) => {
      expect(result.code).toBe(0);
      expect(result.stdout.split('\n')[0]).toBe(String(i));
      expect(result.stdout.endsWith('5000\n')).toBe(true);
    });
  });

  describe('port-forward', () => {
    let web: Server;
    let webPort: number;
    beforeAll(async () => {
      web = createServer((_request, response) => response.end('hello from the pod\n'));
      await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
      webPort = (web.address() as { port: number }).port;
    });
    afterAll(async () => {
      await new Promise((resolve) => web.close(resolve));
    });

    it.each(['spdy', 'websocket'])('forwards a local port to the pod over %s', async (transport) => {
      const local = transport === 'spdy' ? 18080 : 18081;
      const forward = cri.crictlProcess(['port-forward', '--transport', transport, 'pod-1', `${local}:${webPort}`]);
      try {
        await forward.ready(/Forwarding from/);
        for (let i = 0; i < 3; i++) {
          const response = await fetch(`http://127.0.0.1:${local}/`);
          expect(response.status).toBe(200);
          await expect(response.text()).resolves.toBe('hello from the pod\n');
        }
        expect(cri.backend.portForwards.at(-1)).toEqual({ podSandboxId: 'pod-1', port: webPort });
      } finally {
        await forward.stop();
      }
    });

    it('reports a refused connection in the pod on the error stream', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const deadPort = (closed.address() as { port: number }).port;
      await new Promise((resolve) => closed.close(resolve));
      const forward = cri.crictlProcess(['port-forward', 'pod-1', `18082:${deadPort}`]);
      try {
        await forward.ready(/Forwarding from/);
        await expect(fetch('http://127.0.0.1:18082/')).rejects.toThrow();
        await forward.ready(new RegExp(`error forwarding port ${deadPort} to pod pod-1.*ECONNREFUSED`));
      } finally {
        await forward.stop();
      }
    });
  });
});

/** crictl -it needs a terminal: tmux gives it one, and the test types into it. */
describe.skipIf(missing !== undefined || tmuxMissing !== undefined)(
  `crictl exec -it through tmux${tmuxMissing ? ` (skipped: ${tmuxMissing} is not installed)` : ''}`,
  () => {
    let cri: StreamingCri;
    beforeAll(async () => {
      cri = await startStreamingCri();
    });
    afterAll(async () => {
      await cri.close();
    });

    it.each(['spdy', 'websocket'])('gives an interactive shell on a pty over %s, with the window size', async (transport) => {
      const shell = tmuxSession([CRICTL, ...cri.crictlFlags, 'exec', '-it', '--transport', transport, 'ctr-tty', 'sh'], 91, 27);
      try {
        shell.type('echo result=$((6*7)); stty size');
        await shell.screenShows(/result=42\s+27 91/);
        expect(cri.backend.execs.at(-1)).toMatchObject({ containerId: 'ctr-tty', cmd: ['sh'], tty: true });
        expect(cri.backend.resizes).toContainEqual({ width: 91, height: 27 });
        shell.type('exit');
        // The shell exiting ends the session, crictl and with it the tmux session.
        await shell.ended();
      } finally {
        shell.kill();
      }
    });
  },
);
