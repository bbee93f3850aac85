import type { Readable, Writable } from 'node:stream';

/**
 * Chunks that may be forwarded per turn of the event loop, across all relayed streams. A busy
 * stream (`cat` of a large file, `yes`) would otherwise have libuv read and forward chunk after
 * chunk in one turn, and the gRPC calls queued behind that turn would wait: a small budget per
 * turn, shared in turns by the waiting streams, keeps the API answering while streams are busy.
 */
const CHUNKS_PER_TURN = 4;

const waiting: (() => void)[] = [];
let scheduled = false;

/** Lets the next few waiting streams go on, in arrival order, once per turn. */
function nextTurn(): void {
  scheduled = false;
  for (const resume of waiting.splice(0, CHUNKS_PER_TURN)) resume();
  if (waiting.length > 0) schedule();
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(nextTurn);
}

/**
 * Copies `source` into `destination` one chunk at a time, waiting for the destination to drain
 * as `pipe()` does, and for its turn. With `end`, the destination ends when the source does.
 */
export function relay(source: Readable, destination: Writable, { end = false } = {}): void {
  // A destination that fails or closes (a command that exited while input still came, a client
  // gone) ends the relay: what the source still sends is dropped, never left paused forever.
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    source.off('data', onData);
    source.resume();
  };
  const onData = (chunk: Buffer): void => {
    source.pause();
    const queue = (): void => {
      waiting.push(() => {
        if (!stopped) source.resume();
      });
      schedule();
    };
    if (destination.write(chunk)) queue();
    else destination.once('drain', queue);
  };
  destination.once('error', stop);
  destination.once('close', stop);
  if (end) source.once('end', () => destination.end());
  source.on('data', onData);
}
