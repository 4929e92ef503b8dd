import { z } from 'zod';
import { describeValue, InputError } from '../errors.js';
import { isRunId } from './run-id.js';

/**
 * Run events: what a run tells the outside world while it happens. Each event travels as one JSON
 * envelope `{ runId, event, seq, time, data }`; `data` depends on `event`. One schema per event is the
 * single source of truth: the TypeScript types below are inferred from it, publishers validate against
 * it before sending, and subscribers validate what they receive. A new event is one more entry in
 * `runEventPayloads` (and a line in format.ts, which the compiler asks for).
 */

/** Losses can diverge and compression be infinite; NaN and ±Infinity do not survive JSON, so they travel as null. */
const metric = z.preprocess((value) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), z.number().nullable());
const fraction = z.number().min(0).max(1);
const count = z.number().int().nonnegative();
const phaseName = z.string().min(1);

const workerChange = z
  .object({
    workerId: z.string().min(1),
    address: z.string(),
    /** Membership generation after the change; it grows by one with each join or leave. */
    generation: count,
    /** Why the worker left (or was let in late); free text for people. */
    reason: z.string().optional(),
  })
  .readonly();

/** TensorBoard's HistogramProto: bucket i counts the values in (bucketLimit[i-1], bucketLimit[i]]. */
const histogram = z
  .object({
    min: z.number(),
    max: z.number(),
    num: count,
    sum: z.number(),
    sumSquares: z.number().nonnegative(),
    bucketLimit: z.array(z.number()).readonly(),
    bucket: z.array(count).readonly(),
  })
  .readonly();

const layerGates = z
  .object({
    name: z.string().min(1),
    group: z.enum(['conv', 'fc']),
    granularity: z.enum(['weight', 'neuron']),
    params: count,
    kept: count,
    flops: count,
    flopsKept: count,
    /** Entries of M, and those open; for neuron gates, the layer's channels. */
    gates: count,
    gatesOpen: count,
    histogram,
  })
  .readonly();

export type LayerGatesData = z.output<typeof layerGates>;

export const runEventPayloads = {
  'run.started': z
    .object({
      /** Hash of the validated run configuration (as in the run directory), to tell runs apart. */
      configHash: z.string().min(1),
      model: z.string().min(1),
      dataset: z.string().min(1),
      /** Workers the run starts with. */
      workers: count,
      /** Set when the run resumes from a checkpoint: the phase and the steps done in it. */
      resumedFrom: z.object({ phaseIndex: count, step: count }).readonly().optional(),
    })
    .readonly(),
  'worker.joined': workerChange,
  'worker.left': workerChange,
  /** Training progress, every K steps. */
  step: z
    .object({
      phase: phaseName,
      phaseIndex: count,
      step: count,
      steps: count,
      loss: metric,
      /** Training accuracy of the step's batch. */
      accuracy: fraction,
      /** M's objective on the auxiliary batch (prune phase only). */
      auxLoss: metric.optional(),
      /** Fraction of prunable weights still kept. */
      remaining: fraction,
      /** Dense size over kept size, when known. */
      compression: metric.optional(),
      imagesPerSecond: z.number().nonnegative(),
      /** Seconds the slowest rank's steps since the last step event waited for their input (reading, decoding). */
      inputWaitSeconds: z.number().nonnegative().optional(),
      /** Seconds the slowest rank's steps since the last step event spent in the all-reduce of their gradients. */
      allReduceSeconds: z.number().nonnegative().optional(),
      workers: count,
    })
    .readonly(),
  eval: z
    .object({
      phase: phaseName,
      phaseIndex: count,
      step: count,
      testAccuracy: fraction,
      /** Each prunable layer's gates after the evaluated step (what they keep, M's histogram). */
      layers: z.array(layerGates).readonly().optional(),
    })
    .readonly(),
  phase: z
    .object({
      phase: phaseName,
      phaseIndex: count,
      status: z.enum(['started', 'completed']),
      steps: count,
      /** Set when completed. */
      seconds: z.number().nonnegative().optional(),
      /** Set when completed. */
      testAccuracy: fraction.optional(),
    })
    .readonly(),
  'checkpoint.saved': z.object({ path: z.string().min(1), phase: phaseName, step: count }).readonly(),
  'run.finished': z.object({ compression: metric, testAccuracy: fraction, seconds: z.number().nonnegative() }).readonly(),
  'run.failed': z.object({ reason: z.string().min(1) }).readonly(),
  /** A worker was lost: which, how it was noticed, and how long after its last sign of life. */
  'failure.detected': z.object({ workerId: z.string(), how: z.string().min(1), detectSeconds: z.number().nonnegative(), generation: count }).readonly(),
  /** The run goes on in a new generation, from a state held in memory, after redoing some steps. */
  'recovery.completed': z
    .object({
      generation: count,
      workers: count,
      recoverSeconds: z.number().nonnegative(),
      stepsRedone: count,
      from: z.object({ phaseIndex: count, step: count }).readonly(),
    })
    .readonly(),
} as const;

export type RunEventName = keyof typeof runEventPayloads;
export type RunEventData<E extends RunEventName = RunEventName> = z.output<(typeof runEventPayloads)[E]>;

/** The envelope; a union discriminated by `event`, so `if (e.event === 'step') e.data.loss` type-checks. */
export type RunEvent<E extends RunEventName = RunEventName> = {
  [K in E]: Readonly<{
    runId: string;
    event: K;
    /** 1, 2, 3, … per run, in publishing order: a gap means events were missed. */
    seq: number;
    /** ISO 8601 time of publishing. */
    time: string;
    data: RunEventData<K>;
  }>;
}[E];

export const RUN_EVENT_NAMES = Object.keys(runEventPayloads) as RunEventName[];

function isRunEventName(name: string): name is RunEventName {
  return Object.hasOwn(runEventPayloads, name);
}

const envelopeSchema = z.object({
  runId: z.string().refine(isRunId, 'not a valid run id'),
  event: z.string().refine(isRunEventName, { error: (issue) => `unknown event ${describeValue(issue.input)}` }),
  seq: z.number().int().positive(),
  time: z.iso.datetime({ offset: true }),
  data: z.unknown(),
});

/** Validates an event's payload; throws an InputError naming `where` and each field at fault. */
export function parseRunEventData<E extends RunEventName>(event: E, data: unknown, where: string): RunEventData<E> {
  const result = runEventPayloads[event].safeParse(data);
  if (!result.success) throw new InputError(where, `invalid ${event} data: ${describeIssues(result.error, 'data')}`);
  return result.data as RunEventData<E>;
}

/** Validates a whole envelope, e.g. one just parsed from JSON; throws an InputError naming `where`. */
export function parseRunEvent(value: unknown, where: string): RunEvent {
  const envelope = envelopeSchema.safeParse(value);
  if (!envelope.success) throw new InputError(where, `invalid run event: ${describeIssues(envelope.error)}`);
  const { runId, event, seq, time, data } = envelope.data;
  const name = event as RunEventName;
  return Object.freeze({ runId, event: name, seq, time, data: parseRunEventData(name, data, where) }) as RunEvent;
}

function describeIssues(error: z.ZodError, prefix?: string): string {
  return error.issues.map((issue) => `${[...(prefix ? [prefix] : []), ...issue.path.map(String)].join('.') || '(envelope)'}: ${issue.message}`).join('; ');
}
