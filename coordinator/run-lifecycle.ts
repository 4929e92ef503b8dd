/**
 * The run's state machine: pending (waiting for workers) → running → completed | failed. Transitions
 * are explicit; anything else is a bug and throws. Listeners see every transition once.
 */

export type RunStatus = 'pending' | 'running' | 'completed' | 'failed';

const ALLOWED: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  pending: ['running', 'failed'],
  running: ['completed', 'failed'],
  completed: [],
  failed: [],
};

export class RunLifecycle {
  private current: RunStatus = 'pending';
  private failure: string | undefined;
  private failedOnInput = false;
  private readonly settled: Promise<RunStatus>;
  private settle!: (status: RunStatus) => void;

  constructor() {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  get status(): RunStatus {
    return this.current;
  }

  /** Why the run failed; undefined unless it did. */
  get reason(): string | undefined {
    return this.failure;
  }

  /** Whether the run failed on its input (data, config) rather than on a fault of its own. */
  get badInput(): boolean {
    return this.failedOnInput;
  }

  get finished(): boolean {
    return this.current === 'completed' || this.current === 'failed';
  }

  /** Resolves with the final status (completed or failed). */
  whenFinished(): Promise<RunStatus> {
    return this.settled;
  }

  start(): void {
    this.move('running');
  }

  complete(): void {
    this.move('completed');
  }

  /** Fails the run; a second failure keeps the first reason (it is the cause, later ones are effects). */
  fail(reason: string, badInput = false): boolean {
    if (this.finished) return false;
    this.failure = reason;
    this.failedOnInput = badInput;
    this.move('failed');
    return true;
  }

  private move(next: RunStatus): void {
    if (!ALLOWED[this.current].includes(next)) throw new Error(`run cannot go from ${this.current} to ${next}`);
    this.current = next;
    if (this.finished) this.settle(next);
  }
}
