import { type Position, samePosition } from './decisions.js';
import type { PlannedTask } from './task-plan.js';

/**
 * The tasks of the current generation and how far each worker has got through them. Every rank takes
 * the same tasks in order; a worker done with all of them waits for the run's end, unless the run
 * re-forms first and sends it back to the rendezvous. It also keeps the points where a task handed to
 * rank 0 asked for its state and that state has not come yet: the only places rank 0 may send it.
 */
export class TaskBoard {
  private tasks: readonly PlannedTask[];
  private readonly finished = new Map<string, number>();
  private uploads: Position[] = [];
  private readonly waiters = new Set<(error: Error) => void>();

  constructor(tasks: readonly PlannedTask[]) {
    this.tasks = tasks;
  }

  get count(): number {
    return this.tasks.length;
  }

  /** The first task of the plan (undefined: nothing is left to train). */
  get first(): PlannedTask | undefined {
    return this.tasks[0];
  }

  /**
   * Records that `workerId` has finished its first `finishedTask` tasks; false (nothing recorded) when
   * that is neither its last count again nor one more, with the task it was on.
   */
  advance(workerId: string, finishedTask: number): { readonly ok: boolean; readonly onTask: number } {
    const previous = this.finished.get(workerId) ?? 0;
    if (finishedTask !== previous && finishedTask !== previous + 1) return { ok: false, onTask: previous + 1 };
    this.finished.set(workerId, finishedTask);
    return { ok: true, onTask: finishedTask + 1 };
  }

  /** The task after the first `finished` ones, or undefined when none is left. */
  after(finished: number): PlannedTask | undefined {
    return this.tasks[finished];
  }

  /** Rank 0 was handed a task that asks for its state at `position`. */
  askUpload(position: Position): void {
    if (!this.uploads.some((p) => samePosition(p, position))) this.uploads.push({ phaseIndex: position.phaseIndex, step: position.step });
  }

  /** The points where rank 0 was asked for its state and has not sent it yet. */
  get uploadsAsked(): readonly Position[] {
    return this.uploads;
  }

  /** Rank 0's state at `position` came: that upload is no longer outstanding. */
  uploadReceived(position: Position): void {
    this.uploads = this.uploads.filter((p) => !samePosition(p, position));
  }

  /** Whether every one of `workerIds` has finished all the tasks. */
  allFinished(workerIds: readonly string[]): boolean {
    return workerIds.every((id) => this.finished.get(id) === this.tasks.length);
  }

  /** Waits for `end`, unless the run re-forms first (then rejects with the reason to rejoin). */
  waitForEnd<T>(end: Promise<T>): Promise<T> {
    return Promise.race([end, new Promise<never>((_, reject) => this.waiters.add(reject))]);
  }

  /** The run re-forms: workers waiting for its end go back to the rendezvous. */
  releaseWaiters(error: Error): void {
    for (const release of this.waiters) release(error);
    this.waiters.clear();
  }

  /** A new generation goes on with `tasks`, every worker from the first; what the last one asked for is void. */
  replan(tasks: readonly PlannedTask[]): void {
    this.tasks = tasks;
    this.finished.clear();
    this.uploads = [];
  }
}
