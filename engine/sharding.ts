import type { StoredShard } from './data/source.js';
import { EpochSampler, epochOrder, type SamplerCursor } from './sampling.js';
import { interleavedOrder, membersByShard, shardLookup, shardOwners } from './shard-order.js';

/**
 * How a sample stream is shared among the ranks of a distributed run. Every rank walks the same global
 * stream (EpochSampler: a seeded order per epoch) and takes its positions of each epoch. So the global batch
 * of a step is the same for every world size, a single (epoch, offset) cursor describes the whole run, and
 * when the world size changes the rest of the epoch is simply repartitioned among the new ranks.
 *
 * Samples stored one by one (in memory, a file each) are shuffled uniformly and a rank takes the positions
 * congruent to its rank modulo the world size. Samples stored in shards (TFRecord files, packs) are
 * interleaved shard by shard (shard-order.ts) and a rank takes the samples of the shards it reads whole,
 * when the shards can be shared evenly; otherwise, again, the positions congruent to its rank.
 */
export interface StreamPlan {
  /** The stream's global order in `epoch`: every member once. */
  order(epoch: number): Uint32Array;
  /** The rank that takes `sample`, found at `position` of its epoch's order. */
  owner(sample: number, position: number): number;
  /** Whether ranks read whole shards (false: samples are shared one by one). */
  readonly wholeShards: boolean;
}

/** The plan of a stream of `members` in a world of `world` ranks; `shards` says how the samples are stored. */
export function streamPlan(seed: number, stream: string, members: Uint32Array, world: number, shards: readonly StoredShard[] = []): StreamPlan {
  if (shards.length === 0) return { order: (epoch) => epochOrder(seed, stream, epoch, members), owner: (_, position) => position % world, wholeShards: false };
  const byShard = membersByShard(members, shards);
  const order = (epoch: number) => interleavedOrder(seed, stream, epoch, byShard);
  const owners = shardOwners(shards, world);
  if (!owners) return { order, owner: (_, position) => position % world, wholeShards: false };
  const shardOf = shardLookup(shards);
  return { order, owner: (sample) => owners[shardOf(sample)]!, wholeShards: true };
}

/** Rank `rank`'s samples of `epoch` from position `fromOffset` on: every sample of the epoch once across ranks. */
export function epochShard(
  seed: number,
  stream: string,
  members: Uint32Array,
  epoch: number,
  world: number,
  rank: number,
  fromOffset = 0,
  shards: readonly StoredShard[] = [],
): Uint32Array {
  checkRank(world, rank);
  const plan = streamPlan(seed, stream, members, world, shards);
  const order = plan.order(epoch);
  const out: number[] = [];
  for (let p = fromOffset; p < order.length; p++) if (plan.owner(order[p]!, p) === rank) out.push(order[p]!);
  return Uint32Array.from(out);
}

/** Where a stream stands after `steps` global batches of `batchSize` from the start of its first epoch. */
export function cursorAfter(steps: number, batchSize: number, streamLength: number): SamplerCursor {
  const used = steps * batchSize;
  return { epoch: Math.floor(used / streamLength), offset: used % streamLength };
}

export interface ShardBatch {
  /** This rank's samples of the step's global batch. */
  readonly local: Uint32Array;
  /** The epoch each of `local` was drawn in (a global batch can straddle two). */
  readonly epochs: Uint32Array;
  /** Size of the global batch: gradients are weighted by local.length / global before summing. */
  readonly global: number;
}

export class ShardedSampler {
  private readonly sampler: EpochSampler;
  private readonly plan: StreamPlan;

  constructor(
    seed: number,
    stream: string,
    private readonly members: Uint32Array,
    private readonly world: number,
    private readonly rank: number,
    start?: SamplerCursor,
    shards: readonly StoredShard[] = [],
  ) {
    checkRank(world, rank);
    this.plan = streamPlan(seed, stream, members, world, shards);
    this.sampler = new EpochSampler(seed, stream, members, start, this.plan.order);
  }

  get cursor(): SamplerCursor {
    return this.sampler.cursor;
  }

  /** Whether this rank reads whole shards of the stream. */
  get wholeShards(): boolean {
    return this.plan.wholeShards;
  }

  next(batchSize: number): ShardBatch {
    const { epoch, offset: first } = this.sampler.cursor;
    const batch = this.sampler.next(batchSize);
    const length = this.members.length;
    const epochOf = (i: number) => epoch + Math.floor((first + i) / length);
    if (this.world === 1) return { local: batch, epochs: Uint32Array.from(batch, (_, i) => epochOf(i)), global: batchSize };
    const local: number[] = [];
    const epochs: number[] = [];
    for (let i = 0; i < batch.length; i++) {
      if (this.plan.owner(batch[i]!, (first + i) % length) !== this.rank) continue;
      local.push(batch[i]!);
      epochs.push(epochOf(i));
    }
    return { local: Uint32Array.from(local), epochs: Uint32Array.from(epochs), global: batchSize };
  }
}

/**
 * This rank's share of an evaluation of `count` samples: the samples of the shards it reads whole when the
 * shards can be shared evenly, otherwise those congruent to its rank. Every sample once across ranks.
 */
export function evaluationShare(count: number, world: number, rank: number, shards: readonly StoredShard[] = []): Uint32Array {
  checkRank(world, rank);
  const owners = shards.length === 0 ? undefined : shardOwners(shards, world);
  if (!owners) {
    const out = new Uint32Array(Math.max(0, Math.ceil((count - rank) / world)));
    for (let i = 0; i < out.length; i++) out[i] = rank + i * world;
    return out;
  }
  const out: number[] = [];
  for (const [s, shard] of shards.entries()) {
    if (owners[s] !== rank) continue;
    for (let i = shard.first; i < Math.min(shard.first + shard.count, count); i++) out.push(i);
  }
  return Uint32Array.from(out).sort();
}

function checkRank(world: number, rank: number): void {
  if (!Number.isInteger(world) || world < 1 || !Number.isInteger(rank) || rank < 0 || rank >= world) {
    throw new RangeError(`rank ${rank} is not in a world of ${world}`);
  }
}
