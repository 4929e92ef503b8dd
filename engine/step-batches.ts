import type { SampleBatch, SampleSource } from './data/source.js';
import { deriveSeed } from './random.js';
import type { SamplerCursor } from './sampling.js';
import { ShardedSampler } from './sharding.js';
import { type Batch, makeBatch } from './trainer.js';

/**
 * The batches a replica trains on, planned ahead: which samples each coming step's W and M updates take
 * is a pure function of the step (ShardedSampler), so their reads can start before the step runs
 * (ReadAhead, read-ahead.ts); and the tensors of a batch once read.
 */

export type UpdateKind = 'weight' | 'aux';

/** A batch read ahead for a step: the samples the plan gives this replica and what was read of them. */
export interface PlannedBatch {
  readonly step: number;
  readonly kind: UpdateKind;
  readonly samples: Uint32Array;
  /** This replica's planned fraction of the global batch. */
  readonly share: number;
  readonly read: SampleBatch;
}

/** A sample stream of a phase: its name (`<phase>:weight`, `:aux` or `:all`), members and where it stands. */
export interface StreamStart {
  readonly name: string;
  readonly members: Uint32Array;
  readonly cursor: SamplerCursor;
}

export interface SegmentPlan {
  readonly seed: number;
  readonly batchSize: number;
  readonly world: number;
  readonly rank: number;
  readonly phaseIndex: number;
  readonly from: number;
  readonly to: number;
  /** The updates of each step, in their order. */
  readonly kinds: readonly UpdateKind[];
  readonly streams: { readonly weight: StreamStart; readonly aux: StreamStart | undefined };
}

/** Dropout (and CIFAR-10's per-batch augmentation) differ per replica, so each one's share of the batch sees its own noise. */
export function stepSeed(seed: number, phaseIndex: number, step: number, kind: UpdateKind, rank: number): number {
  return deriveSeed(seed, phaseIndex, step, rank === 0 ? kind : `${kind}@${rank}`);
}

/**
 * The reads of a segment's batches from `source`, in the order its steps take them, each started when
 * pulled: the samplers stand where the segment starts and advance one global batch per pull.
 */
export function* plannedReads(plan: SegmentPlan, source: SampleSource): Generator<Promise<PlannedBatch>> {
  const { seed, batchSize, world, rank, phaseIndex } = plan;
  const sampler = (stream: StreamStart) => new ShardedSampler(seed, stream.name, stream.members, world, rank, stream.cursor, source.shards);
  const samplers = { weight: sampler(plan.streams.weight), aux: plan.streams.aux && sampler(plan.streams.aux) };
  // Per-sample augmentation (ImageNet's crops) is a function of the phase, the epoch and the sample only:
  // the same pixels whatever the world size, and again after a resume.
  const sampleSeed = deriveSeed(seed, phaseIndex, 'augment');
  for (let step = plan.from; step < plan.to; step++) {
    for (const kind of plan.kinds) {
      const stream = samplers[kind];
      if (!stream) throw new Error(`phase ${phaseIndex} has no ${kind} stream`);
      const { local, epochs, global } = stream.next(batchSize);
      const purpose = { kind: 'train', batchSeed: stepSeed(seed, phaseIndex, step, kind, rank), sampleSeed, epochs } as const;
      yield source.read(local, purpose).then((read) => ({ step, kind, samples: local, share: local.length / global, read }));
    }
  }
}

/** The reads of an evaluation share, `batchSize` samples at a time. */
export function* evaluationReads(source: SampleSource, indices: Uint32Array, batchSize: number): Generator<Promise<SampleBatch>> {
  for (let start = 0; start < indices.length; start += batchSize) yield source.read(indices.subarray(start, start + batchSize), { kind: 'evaluate' });
}

/**
 * The tensors of a planned batch and this replica's share of the global batch. Samples skipped as bad
 * leave the share as planned (the good ones stand in for them, and the shares still sum to 1); a batch
 * with none left still takes part in the exchange, with one all-zero (mean) image at share 0, which
 * contributes nothing.
 */
export function batchTensors(planned: PlannedBatch, source: SampleSource): { batch: Batch; share: number } {
  if (planned.read.indices.length > 0) return { batch: makeBatch(planned.read, source), share: planned.share };
  const empty: SampleBatch = {
    indices: Uint32Array.of(0),
    pixels: { type: 'float32', values: new Float32Array(source.height * source.width * source.channels) },
    labels: Int32Array.of(0),
  };
  return { batch: makeBatch(empty, source), share: 0 };
}
