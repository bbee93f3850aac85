import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * `crictl exec -it` and `attach -it` need a terminal on their side: a detached tmux session
 * gives them one of a known size, and the test types into it and reads its screen.
 */

// In CI (CI=true) .ci/run installs tmux and python3: a missing one must fail there, not skip.
export const tmuxMissing =
  process.env['CI'] === 'true'
    ? undefined
    : ['tmux', 'python3'].find((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);

export interface TmuxSession {
  /** Types `keys` and presses Enter. */
  type(keys: string): void;
  /** Resolves once the screen matches; throws with the screen after ~10 s. */
  screenShows(pattern: RegExp): Promise<void>;
  /** Resolves once the session has ended (its command exited); throws after ~10 s. */
  ended(): Promise<void>;
  kill(): void;
}

/** Runs `command` in a new detached tmux session, on a terminal of `columns` x `rows`. */
export function tmuxSession(command: string[], columns: number, rows: number): TmuxSession {
  const server = `icetray-test-${String(process.pid)}-${String(Math.random()).slice(2, 8)}`;
  const tmux = (...args: string[]): string => {
    const result = spawnSync('tmux', ['-L', server, ...args], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const alive = (): boolean => spawnSync('tmux', ['-L', server, 'has-session', '-t', 'main']).status === 0;
  tmux('new-session', '-d', '-s', 'main', '-x', String(columns), '-y', String(rows), command.map((arg) => `'${arg}'`).join(' '));
  return {
    type(keys) {
      tmux('send-keys', '-t', 'main', keys, 'Enter');
    },
    async screenShows(pattern) {
      for (let i = 0; i < 100; i++) {
        if (pattern.test(tmux('capture-pane', '-p', '-t', 'main'))) return;
        await sleep(100);
      }
      throw new Error(`the screen never showed ${pattern.source}:\n${tmux('capture-pane', '-p', '-t', 'main')}`);
    },
    async ended() {
      for (let i = 0; i < 100 && alive(); i++) await sleep(100);
      if (alive()) throw new Error(`the session did not end:\n${tmux('capture-pane', '-p', '-t', 'main')}`);
    },
    kill() {
      spawnSync('tmux', ['-L', server, 'kill-server']);
    },
  };
}
