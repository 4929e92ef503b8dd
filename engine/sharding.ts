import { EpochSampler, epochOrder, type SamplerCursor } from './sampling.js';

/**
 * How a sample stream is shared among the ranks of a distributed run. Every rank walks the same global
 * stream (EpochSampler: a seeded order per epoch) and takes the positions of each epoch that are congruent
 * to its rank modulo the world size. So the global batch of a step is the same for every world size, a
 * single (epoch, offset) cursor describes the whole run, and when the world size changes the rest of the
 * epoch is simply repartitioned by the new modulus.
 */

/** Rank `rank`'s samples of `epoch` from position `fromOffset` on: every sample of the epoch once across ranks. */
export function epochShard(seed: number, stream: string, members: Uint32Array, epoch: number, world: number, rank: number, fromOffset = 0): Uint32Array {
  checkRank(world, rank);
  const order = epochOrder(seed, stream, epoch, members);
  const first = fromOffset + ((((rank - fromOffset) % world) + world) % world);
  const out = new Uint32Array(first < order.length ? Math.ceil((order.length - first) / world) : 0);
  for (let p = first, i = 0; p < order.length; p += world, i++) out[i] = order[p]!;
  return out;
}

/** Where a stream stands after `steps` global batches of `batchSize` from the start of its first epoch. */
export function cursorAfter(steps: number, batchSize: number, streamLength: number): SamplerCursor {
  const used = steps * batchSize;
  return { epoch: Math.floor(used / streamLength), offset: used % streamLength };
}

export interface ShardBatch {
  /** This rank's samples of the step's global batch. */
  readonly local: Uint32Array;
  /** Size of the global batch: gradients are weighted by local.length / global before summing. */
  readonly global: number;
}

export class ShardedSampler {
  private readonly sampler: EpochSampler;

  constructor(
    seed: number,
    stream: string,
    private readonly members: Uint32Array,
    private readonly world: number,
    private readonly rank: number,
    start?: SamplerCursor,
  ) {
    checkRank(world, rank);
    this.sampler = new EpochSampler(seed, stream, members, start);
  }

  get cursor(): SamplerCursor {
    return this.sampler.cursor;
  }

  next(batchSize: number): ShardBatch {
    const first = this.sampler.cursor.offset;
    const batch = this.sampler.next(batchSize);
    if (this.world === 1) return { local: batch, global: batchSize };
    const length = this.members.length;
    const local: number[] = [];
    for (let i = 0; i < batch.length; i++) {
      if (((first + i) % length) % this.world === this.rank) local.push(batch[i]!);
    }
    return { local: Uint32Array.from(local), global: batchSize };
  }
}

function checkRank(world: number, rank: number): void {
  if (!Number.isInteger(world) || world < 1 || !Number.isInteger(rank) || rank < 0 || rank >= world) {
    throw new RangeError(`rank ${rank} is not in a world of ${world}`);
  }
}
