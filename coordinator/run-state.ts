/**
 * The run's state machine: pending (waiting for the first generation) → running ⇄ recovering (re-forming
 * after a failure or to take in a worker) → completed | failed, and running | recovering → stopping →
 * failed when the coordinator is told to stop (SIGTERM): the workers offer their state, a final
 * checkpoint is written, and the run ends interrupted. Each state carries its own data: the
 * recovery's start, cause and count live in the `recovering` state. Transitions follow an explicit table;
 * anything else is a bug and throws.
 */

export type RunStatus = 'pending' | 'running' | 'recovering' | 'stopping' | 'completed' | 'failed';

/** What made the run re-form: a member failed, or a worker joined a run under way. */
export type DisruptionKind = 'failure' | 'join';

export interface Recovering {
  readonly status: 'recovering';
  /** When the first disruption of this recovery was noticed. */
  readonly detectedAt: number;
  /** Why the run re-forms: the first failure (or, until one comes, the join) of this recovery. */
  readonly reason: string;
  /** Failure recoveries this run has started, this one included; joins do not count. */
  readonly count: number;
  readonly cause: DisruptionKind;
  /** Since when fewer than minWorkers are left (undefined while there are enough). */
  readonly waitingSince: number | undefined;
}

export type RunState =
  | { readonly status: 'pending' }
  | { readonly status: 'running'; readonly recoveries: number }
  | Recovering
  /** Told to stop (`reason`): collecting the workers' states for a final checkpoint, then failed as interrupted. */
  | { readonly status: 'stopping'; readonly reason: string }
  | { readonly status: 'completed' }
  /** `interrupted`: the run was stopped from outside (a signal), not by a fault; it can be resumed. */
  | { readonly status: 'failed'; readonly reason: string; readonly badInput: boolean; readonly interrupted: boolean };

/** Allowed transitions. recovering → recovering updates a recovery (a failure after a join, the minWorkers wait begins). */
export const RUN_TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  pending: ['running', 'failed'],
  running: ['recovering', 'stopping', 'completed', 'failed'],
  // Completed too: results written from the last phase's state while a worker drops out are the run's results.
  recovering: ['recovering', 'running', 'stopping', 'completed', 'failed'],
  stopping: ['failed'],
  completed: [],
  failed: [],
};

export class RunStateMachine {
  private current: RunState = { status: 'pending' };
  private readonly settled: Promise<RunStatus>;
  private settle!: (status: RunStatus) => void;

  constructor() {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  get state(): RunState {
    return this.current;
  }

  get status(): RunStatus {
    return this.current.status;
  }

  /** Why the run failed; undefined unless it did. */
  get reason(): string | undefined {
    return this.current.status === 'failed' ? this.current.reason : undefined;
  }

  /** Whether the run failed on bad input. */
  get badInput(): boolean {
    return this.current.status === 'failed' && this.current.badInput;
  }

  /** Whether the run ended because it was told to stop. */
  get interrupted(): boolean {
    return this.current.status === 'failed' && this.current.interrupted;
  }

  get finished(): boolean {
    return this.current.status === 'completed' || this.current.status === 'failed';
  }

  /** Running or recovering: the first generation has formed and the run has not ended. */
  get underWay(): boolean {
    return this.current.status === 'running' || this.current.status === 'recovering';
  }

  /** Resolves with the final status (completed or failed). */
  whenFinished(): Promise<RunStatus> {
    return this.settled;
  }

  /** The first generation formed. */
  start(): void {
    this.move({ status: 'running', recoveries: 0 });
  }

  /** The run re-forms (from running), or the recovery under way changes (from recovering). */
  recover(recovery: Omit<Recovering, 'status'>): void {
    this.move({ status: 'recovering', ...recovery });
  }

  /** A new generation formed: training goes on, the recovery's count kept for the next one. */
  recovered(): void {
    const { current } = this;
    this.move({ status: 'running', recoveries: current.status === 'recovering' ? current.count : 0 });
  }

  complete(): void {
    this.move({ status: 'completed' });
  }

  /** Told to stop while under way: the final checkpoint is collected before the run ends (interrupt). */
  stop(reason: string): void {
    this.move({ status: 'stopping', reason });
  }

  /** Ends the run as interrupted (from stopping, or at once when it is not under way); false if it had already ended. */
  interrupt(reason: string): boolean {
    if (this.finished) return false;
    this.move({ status: 'failed', reason, badInput: false, interrupted: true });
    return true;
  }

  /**
   * Fails the run; a second failure keeps the first reason (it is the cause, later ones are effects).
   * `badInput`: the cause is the user's input (a worker refused the run's data), so the CLI exits 2.
   */
  fail(reason: string, badInput = false): boolean {
    if (this.finished) return false;
    this.move({ status: 'failed', reason, badInput, interrupted: false });
    return true;
  }

  private move(next: RunState): void {
    if (!RUN_TRANSITIONS[this.current.status].includes(next.status)) throw new Error(`run cannot go from ${this.current.status} to ${next.status}`);
    this.current = next;
    if (this.finished) this.settle(next.status);
  }
}
