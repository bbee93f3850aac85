import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The relay run inside the pod's network namespace: Node cannot enter a namespace itself, so a
 * second Node (the one running icetray) is started there with `nsenter --net`; it connects to
 * the port on the pod's loopback and copies bytes between the connection and its stdio.
 * Half-close is kept: stdin's end ends the connection's write side, and the other way round.
 */
const RELAY = `
const socket = require('node:net').connect(Number(process.argv[1]), '127.0.0.1');
socket.on('connect', () => process.stderr.write('connected\\n'));
socket.on('error', (err) => { process.stderr.write(err.message + '\\n'); process.exit(1); });
process.stdin.pipe(socket);
socket.pipe(process.stdout);
`;

/** Starts the relay to 127.0.0.1:port inside the network namespace pinned at `netns`. */
export function dialInNetns(netns: string, port: number): ChildProcess {
  return spawn('nsenter', [`--net=${netns}`, '--', process.execPath, '-e', RELAY, String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}
