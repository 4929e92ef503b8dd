import { seededUniform, shuffled } from './random.js';

/**
 * Which training samples feed which update. AutoPrune trains W and M on two disjoint halves of the
 * training set (1:1), so that M learns which weights matter on data W was not fitted to. Both the split
 * and every epoch's order are pure functions of the seed: any process reproduces them, and a cursor
 * (epoch, offset) is all that is needed to resume.
 */

export interface TrainingSplit {
  /** Sample indices of the weight half (sorted). */
  readonly weight: Uint32Array;
  /** Sample indices of the auxiliary half (sorted). */
  readonly aux: Uint32Array;
}

/** Splits 0..count-1 into two halves at random under `seed`; the weight half gets the odd sample. */
export function splitTrainingSet(seed: number, count: number): TrainingSplit {
  const order = shuffled(range(count), seededUniform(seed, 'split'));
  const half = Math.ceil(count / 2);
  return { weight: order.slice(0, half).sort(), aux: order.slice(half).sort() };
}

export function range(count: number): Uint32Array {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = i;
  return out;
}

/** The order in which `members` are visited in `epoch` of the stream called `stream`. */
export function epochOrder(seed: number, stream: string, epoch: number, members: Uint32Array): Uint32Array {
  return shuffled(members, seededUniform(seed, stream, epoch));
}

export interface SamplerCursor {
  readonly epoch: number;
  /** Samples of this epoch's order already handed out. */
  readonly offset: number;
}

/**
 * Hands out batches from `members`, each sample exactly once per epoch; a batch that reaches the end of
 * an epoch is completed from the next one.
 */
export class EpochSampler {
  private order: Uint32Array;
  private position: SamplerCursor;

  constructor(
    seed: number,
    readonly stream: string,
    members: Uint32Array,
    start: SamplerCursor = { epoch: 0, offset: 0 },
    /** The order of `members` in an epoch: a seeded shuffle unless the stream's storage asks for another (sharding.ts). */
    private readonly orderOf: (epoch: number) => Uint32Array = (epoch) => epochOrder(seed, stream, epoch, members),
  ) {
    if (members.length === 0) throw new Error(`sample stream ${stream} is empty`);
    if (start.offset >= members.length) throw new RangeError(`cursor offset ${start.offset} is past the end of stream ${stream} (${members.length} samples)`);
    this.position = start;
    this.order = orderOf(start.epoch);
  }

  get cursor(): SamplerCursor {
    return this.position;
  }

  next(batchSize: number): Uint32Array {
    const batch = new Uint32Array(batchSize);
    let filled = 0;
    while (filled < batchSize) {
      const { epoch, offset } = this.position;
      const take = Math.min(batchSize - filled, this.order.length - offset);
      batch.set(this.order.subarray(offset, offset + take), filled);
      filled += take;
      this.position = { epoch, offset: offset + take };
      // A used-up epoch moves the cursor to the start of the next, so that a cursor has one spelling.
      if (offset + take === this.order.length) {
        this.position = { epoch: epoch + 1, offset: 0 };
        this.order = this.orderOf(epoch + 1);
      }
    }
    return batch;
  }
}
