import { log } from './log.js';

/**
 * Undo steps for a multi-step create (RunPodSandbox, CreateContainer): after each step that
 * succeeded, push how to undo it; on failure `undo()` runs them in reverse and logs (never
 * throws) their own errors, so the caller rethrows the original one. Nothing half-made stays.
 */
export class Rollback {
  private readonly steps: { what: string; undo: () => Promise<unknown> }[] = [];

  push(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  async undo(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (err) {
        log.error({ err, step: step.what }, 'rollback step failed');
      }
    }
    this.steps.length = 0;
  }

  /** Runs `body` with this rollback: on a throw, undoes the steps pushed so far and rethrows. */
  static async run<T>(body: (rollback: Rollback) => Promise<T>): Promise<T> {
    const rollback = new Rollback();
    try {
      return await body(rollback);
    } catch (err) {
      await rollback.undo();
      throw err;
    }
  }
}
