import { learningRateAt } from '../../engine/schedules.js';
import type { RunConfig } from '../../shared/config.js';
import type { LayerGatesData, RunEvent } from '../../shared/events/types.js';
import type { ScalarValue, TensorBoardRecord } from './event-encoder.js';

/**
 * What TensorBoard shows of a run, as a pure function of its events: each event's scalars and histograms
 * at the run's global step (the steps of the phases before, plus the step within the phase).
 */

/** Where the mapping stands: the last global step seen (events without a step of their own are put there) and the counts so far. */
export interface SummaryState {
  readonly step: number;
  readonly failures: number;
  readonly recoveries: number;
}

export const INITIAL_SUMMARY_STATE: SummaryState = { step: 0, failures: 0, recoveries: 0 };

/** The global step of `step` within phase `phaseIndex`. */
export function globalStep(phases: RunConfig['phases'], phaseIndex: number, step: number): number {
  return phases.slice(0, phaseIndex).reduce((sum, phase) => sum + phase.steps, 0) + step;
}

/** The records `event` adds, and the state after it. */
export function summariesOf(config: RunConfig, state: SummaryState, event: RunEvent): { records: TensorBoardRecord[]; state: SummaryState } {
  const wallTime = Date.parse(event.time) / 1000;
  const scalars = (step: number, values: ScalarValue[]): TensorBoardRecord[] => [{ kind: 'scalars', wallTime, step, values }];
  switch (event.event) {
    case 'step': {
      const d = event.data;
      const step = globalStep(config.phases, d.phaseIndex, d.step);
      const phase = config.phases[d.phaseIndex]!;
      // The rate of the last step trained (0-based step - 1), as the step loop computed it.
      const lastTrained = Math.max(0, d.step - 1);
      const values: ScalarValue[] = [
        ...finite('loss/W', d.loss),
        ...finite('loss/M', d.auxLoss),
        { tag: 'accuracy/train', value: d.accuracy },
        { tag: 'kept/total', value: d.remaining },
        ...finite('compression', d.compression),
        { tag: 'learning_rate/W', value: learningRateAt(phase.weights.lr, lastTrained, phase.steps) },
        ...(phase.phase === 'prune' ? [{ tag: 'learning_rate/M', value: learningRateAt(phase.aux.lr, lastTrained, phase.steps) }] : []),
        { tag: 'throughput/images_per_second', value: d.imagesPerSecond },
        ...finite('time/all_reduce_seconds', d.allReduceSeconds),
        ...finite('time/input_wait_seconds', d.inputWaitSeconds),
        { tag: 'workers', value: d.workers },
      ];
      return { records: scalars(step, values), state: { ...state, step } };
    }
    case 'eval': {
      const d = event.data;
      const step = globalStep(config.phases, d.phaseIndex, d.step);
      const records = scalars(step, [{ tag: 'accuracy/test', value: d.testAccuracy }, ...layerScalars(d.layers ?? [])]);
      for (const layer of d.layers ?? [])
        if (layer.histogram.num > 0) records.push({ kind: 'histogram', wallTime, step, tag: `M/${layer.name}`, histogram: layer.histogram });
      return { records, state: { ...state, step } };
    }
    case 'failure.detected': {
      const failures = state.failures + 1;
      const values = [
        { tag: 'events/failures', value: failures },
        { tag: 'events/failure_detect_seconds', value: event.data.detectSeconds },
      ];
      return { records: scalars(state.step, values), state: { ...state, failures } };
    }
    case 'recovery.completed': {
      const d = event.data;
      const recoveries = state.recoveries + 1;
      const step = globalStep(config.phases, d.from.phaseIndex, d.from.step);
      const values = [
        { tag: 'events/recoveries', value: recoveries },
        { tag: 'events/recovery_seconds', value: d.recoverSeconds },
        { tag: 'events/steps_redone', value: d.stepsRedone },
        { tag: 'workers', value: d.workers },
      ];
      return { records: scalars(step, values), state: { ...state, step, recoveries } };
    }
    default:
      return { records: [], state };
  }
}

/** Kept fractions per layer and per group (conv, fc), the FLOPs kept, and the open gates of neuron-gated layers. */
function layerScalars(layers: readonly LayerGatesData[]): ScalarValue[] {
  if (layers.length === 0) return [];
  const values: ScalarValue[] = layers.map((l) => ({ tag: `kept/layer/${l.name}`, value: ratio(l.kept, l.params) }));
  for (const group of ['conv', 'fc'] as const) {
    const members = layers.filter((l) => l.group === group);
    if (members.length === 0) continue;
    values.push({
      tag: `kept/group/${group}`,
      value: ratio(
        sum(members, (l) => l.kept),
        sum(members, (l) => l.params),
      ),
    });
  }
  values.push({
    tag: 'flops/kept',
    value: ratio(
      sum(layers, (l) => l.flopsKept),
      sum(layers, (l) => l.flops),
    ),
  });
  for (const l of layers) if (l.granularity === 'neuron') values.push({ tag: `channels_kept/${l.name}`, value: l.gatesOpen });
  return values;
}

function finite(tag: string, value: number | null | undefined): ScalarValue[] {
  return typeof value === 'number' && Number.isFinite(value) ? [{ tag, value }] : [];
}

function ratio(part: number, whole: number): number {
  return whole === 0 ? 0 : part / whole;
}

function sum<T>(items: readonly T[], pick: (item: T) => number): number {
  return items.reduce((acc, item) => acc + pick(item), 0);
}
