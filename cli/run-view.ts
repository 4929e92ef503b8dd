import { globalStep } from '../coordinator/tensorboard/run-summaries.js';
import type { LayerGatesData } from '../shared/events/types.js';
import type { RunProgress } from './run-progress.js';

/**
 * A run as `status` and the HTML report show it, a pure function of what its directory holds: where it
 * stands, and its series against the run's global step. A run resumed from a checkpoint, or recovered after
 * a failure, redoes steps: the later values of a step replace the earlier ones.
 */

export type RunState = 'starting' | 'running' | 'finished' | 'failed';

export interface StepPoint {
  readonly step: number;
  readonly phaseIndex: number;
  readonly loss: number | null;
  readonly auxLoss: number | null;
  readonly accuracy: number;
  readonly kept: number;
}

export interface TimelineMark {
  readonly step: number;
  readonly time: string;
  readonly kind: 'failure' | 'recovery' | 'resume';
  readonly text: string;
}

export interface RunView {
  readonly state: RunState;
  readonly failedReason: string | undefined;
  /** The phase in progress (or the last one), with the steps done in it. */
  readonly phase: { readonly name: string; readonly index: number; readonly step: number; readonly steps: number } | undefined;
  readonly step: number;
  readonly steps: number;
  readonly workers: number | undefined;
  readonly generation: number;
  readonly kept: number | undefined;
  readonly lastEvaluation: { readonly phase: string; readonly step: number; readonly testAccuracy: number } | undefined;
  readonly lastCheckpoint: { readonly name: string; readonly phaseIndex: number; readonly step: number; readonly savedAt: number } | undefined;
  readonly failures: number;
  readonly recoveries: number;
  readonly lastEventAt: string | undefined;
  readonly phases: readonly { readonly name: string; readonly index: number; readonly from: number; readonly to: number }[];
  readonly series: readonly StepPoint[];
  readonly evaluations: readonly { readonly step: number; readonly testAccuracy: number }[];
  readonly marks: readonly TimelineMark[];
  /** The gates as the last evaluation described them. */
  readonly layers: readonly LayerGatesData[];
}

export function viewRun(progress: RunProgress): RunView {
  const { config, events } = progress;
  const at = (phaseIndex: number, step: number) => globalStep(config.phases, phaseIndex, step);
  const points = new Map<number, StepPoint>();
  const evaluations = new Map<number, number>();
  const marks: TimelineMark[] = [];
  let state: RunState = 'starting';
  let failedReason: string | undefined;
  let current: RunView['phase'];
  let workers: number | undefined;
  let kept: number | undefined;
  let lastEvaluation: RunView['lastEvaluation'];
  let layers: readonly LayerGatesData[] = [];
  let failures = 0;
  let recoveries = 0;
  let reached = 0;
  for (const event of events) {
    switch (event.event) {
      case 'run.started':
        state = 'running';
        failedReason = undefined;
        workers = event.data.workers;
        if (event.data.resumedFrom) {
          const { phaseIndex, step } = event.data.resumedFrom;
          marks.push({
            step: at(phaseIndex, step),
            time: event.time,
            kind: 'resume',
            text: `resumed from the checkpoint at step ${step} of phase ${phaseIndex + 1}`,
          });
        }
        break;
      case 'step': {
        const d = event.data;
        reached = at(d.phaseIndex, d.step);
        points.set(reached, { step: reached, phaseIndex: d.phaseIndex, loss: d.loss, auxLoss: d.auxLoss ?? null, accuracy: d.accuracy, kept: d.remaining });
        current = { name: d.phase, index: d.phaseIndex, step: d.step, steps: d.steps };
        workers = d.workers;
        kept = d.remaining;
        break;
      }
      case 'phase':
        if (event.data.status === 'started') current = { name: event.data.phase, index: event.data.phaseIndex, step: 0, steps: event.data.steps };
        break;
      case 'eval':
        evaluations.set(at(event.data.phaseIndex, event.data.step), event.data.testAccuracy);
        lastEvaluation = { phase: event.data.phase, step: event.data.step, testAccuracy: event.data.testAccuracy };
        if (event.data.layers) layers = event.data.layers;
        break;
      case 'failure.detected':
        failures += 1;
        marks.push({ step: reached, time: event.time, kind: 'failure', text: `worker ${event.data.workerId} lost (${event.data.how})` });
        break;
      case 'recovery.completed': {
        recoveries += 1;
        workers = event.data.workers;
        const { phaseIndex, step } = event.data.from;
        marks.push({
          step: at(phaseIndex, step),
          time: event.time,
          kind: 'recovery',
          text: `generation ${event.data.generation} with ${event.data.workers} workers after ${event.data.recoverSeconds.toFixed(1)} s, ${event.data.stepsRedone} steps redone`,
        });
        break;
      }
      case 'run.finished':
        state = 'finished';
        break;
      case 'run.failed':
        state = 'failed';
        failedReason = event.data.reason;
        break;
      default:
        break;
    }
  }
  if (progress.report) state = 'finished';
  const lastCheckpoint = progress.checkpoints[progress.checkpoints.length - 1];
  let from = 0;
  const phases = config.phases.map((phase, index) => {
    const span = { name: phase.phase, index, from, to: from + phase.steps };
    from = span.to;
    return span;
  });
  const series = [...points.values()].sort((a, b) => a.step - b.step);
  return {
    state,
    failedReason,
    phase: current,
    step: current ? at(current.index, current.step) : 0,
    steps: from,
    workers,
    generation: progress.generation,
    kept,
    lastEvaluation,
    lastCheckpoint,
    failures,
    recoveries,
    lastEventAt: events[events.length - 1]?.time,
    phases,
    series,
    evaluations: [...evaluations.entries()].sort((a, b) => a[0] - b[0]).map(([step, testAccuracy]) => ({ step, testAccuracy })),
    marks,
    layers,
  };
}
