import type { RunConfig } from '../shared/config.js';

/**
 * The run as a list of training tasks, a pure function of the config and of where the run starts: each
 * phase is cut at its evaluation and checkpoint points, every task ends with an evaluation, and a task
 * that ends at a checkpoint point (or a phase's end) has rank 0 send its state, which the coordinator
 * writes as a checkpoint. Every rank takes the same tasks in the same order.
 */

export interface PlannedTask {
  /** 1-based, in run order. */
  readonly id: number;
  readonly phaseIndex: number;
  readonly fromStep: number;
  readonly toStep: number;
  /** The phase starts here: fresh optimizers. */
  readonly resetOptimizers: boolean;
  /** Load the state the coordinator serves before training (a resumed run, a dense phase's `init`). */
  readonly restoreState: boolean;
  readonly evaluate: boolean;
  /** Rank 0 uploads the state at the end, for a checkpoint. */
  readonly uploadState: boolean;
}

/** Where a run starts: its beginning, or a checkpoint's (phase index, steps done in that phase). */
export interface RunStart {
  readonly phaseIndex: number;
  readonly step: number;
}

export function planTasks(
  config: Pick<RunConfig, 'phases' | 'evaluation' | 'checkpoint' | 'logging'>,
  start: RunStart = { phaseIndex: 0, step: 0 },
): PlannedTask[] {
  const tasks: PlannedTask[] = [];
  // A checkpoint taken at a phase's end resumes at the start of the next phase.
  const begin = start.step > 0 && start.step >= (config.phases[start.phaseIndex]?.steps ?? 0) ? { phaseIndex: start.phaseIndex + 1, step: 0 } : start;
  const resumed = start.phaseIndex > 0 || start.step > 0;
  for (let phaseIndex = begin.phaseIndex; phaseIndex < config.phases.length; phaseIndex++) {
    const phase = config.phases[phaseIndex]!;
    const first = phaseIndex === begin.phaseIndex ? begin.step : 0;
    // With time-based checkpoints, tasks also end every logging interval, where the coordinator may ask for one.
    const timeCuts = config.checkpoint.seconds > 0 ? config.logging.every : 0;
    const cuts = cutPoints(phase.steps, [config.evaluation.every, config.checkpoint.every, timeCuts]);
    // A phase of zero steps (a dense phase that only loads `init`) still evaluates and checkpoints once.
    const ends = phase.steps === 0 ? [0] : cuts.filter((c) => c > first);
    let from = first;
    for (const to of ends) {
      const startsPhase = from === 0;
      const isFirstTask = tasks.length === 0;
      const loadsInit = startsPhase && phase.phase === 'dense' && phase.init !== undefined;
      tasks.push({
        id: tasks.length + 1,
        phaseIndex,
        fromStep: from,
        toStep: to,
        resetOptimizers: startsPhase,
        restoreState: (isFirstTask && resumed) || loadsInit,
        evaluate: to === phase.steps || isMultiple(to, config.evaluation.every),
        uploadState: to === phase.steps || isMultiple(to, config.checkpoint.every),
      });
      from = to;
    }
  }
  return tasks;
}

/** The steps where a phase's tasks end: every multiple of each period (0: none), and its last step. */
function cutPoints(steps: number, periods: readonly number[]): number[] {
  const points = new Set<number>([steps]);
  for (const every of periods) {
    if (every > 0) for (let s = every; s < steps; s += every) points.add(s);
  }
  return [...points].sort((a, b) => a - b);
}

function isMultiple(step: number, every: number): boolean {
  return every > 0 && step % every === 0;
}
