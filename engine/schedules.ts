/**
 * Learning-rate schedules as pure, serialisable functions of the step within a phase, so that any
 * process, or a resumed run, computes the same rate for the same step.
 */
export type LearningRateSchedule =
  | { readonly type: 'constant'; readonly value: number }
  /** value · gamma^floor(step / every) */
  | { readonly type: 'step'; readonly value: number; readonly gamma: number; readonly every: number }
  /** Linear warm-up over `warmup` steps, then cosine decay from value to `min` at the phase's last step. */
  | { readonly type: 'cosine'; readonly value: number; readonly min: number; readonly warmup: number };

/** The learning rate at `step` (0-based) of a phase of `totalSteps` steps. */
export function learningRateAt(schedule: LearningRateSchedule, step: number, totalSteps: number): number {
  switch (schedule.type) {
    case 'constant':
      return schedule.value;
    case 'step':
      return schedule.value * schedule.gamma ** Math.floor(step / schedule.every);
    case 'cosine': {
      if (step < schedule.warmup) return (schedule.value * (step + 1)) / schedule.warmup;
      const span = Math.max(1, totalSteps - schedule.warmup - 1);
      const progress = Math.min(1, (step - schedule.warmup) / span);
      return schedule.min + 0.5 * (schedule.value - schedule.min) * (1 + Math.cos(Math.PI * progress));
    }
  }
}
