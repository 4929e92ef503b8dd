import type { RunConfig } from '../shared/config.js';

/**
 * The run as a list of training tasks, a pure function of the config: each phase is cut at its evaluation
 * points, every task ends with an evaluation, and the last task of a phase also sends the state to the
 * coordinator, which checkpoints it. Every rank takes the same tasks in the same order.
 */

export interface PlannedTask {
  /** 1-based, in run order. */
  readonly id: number;
  readonly phaseIndex: number;
  readonly fromStep: number;
  readonly toStep: number;
  /** The phase starts here: fresh optimizers. */
  readonly resetOptimizers: boolean;
  readonly evaluate: boolean;
  /** Last task of its phase: rank 0 uploads the state for the checkpoint. */
  readonly uploadState: boolean;
}

export function planTasks(config: Pick<RunConfig, 'phases' | 'evaluation'>): PlannedTask[] {
  const tasks: PlannedTask[] = [];
  for (const [phaseIndex, phase] of config.phases.entries()) {
    const every = config.evaluation.every > 0 ? config.evaluation.every : Math.max(phase.steps, 1);
    // A phase of zero steps (a dense phase that only loads `init`) still evaluates and checkpoints once.
    for (let from = 0; from < phase.steps || (from === 0 && phase.steps === 0); from += every) {
      const to = Math.min(phase.steps, from + every);
      tasks.push({ id: tasks.length + 1, phaseIndex, fromStep: from, toStep: to, resetOptimizers: from === 0, evaluate: true, uploadState: to === phase.steps });
    }
  }
  return tasks;
}
