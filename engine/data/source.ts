/**
 * The engine's view of a training or test set: its shape, its labels, and batches of pixels read on
 * request, asynchronously, so that a set too large for memory (ImageNet) is read and decoded while the
 * previous step trains. The in-memory MNIST and CIFAR-10 sets and the ImageNet reader implement it.
 */

/** What a batch is read for: training (augmented where the source augments) or evaluation. */
export type ReadPurpose =
  | { readonly kind: 'evaluate' }
  | {
      readonly kind: 'train';
      /** One stream of random numbers per batch: CIFAR-10's crops and flips, drawn per batch as they always were. */
      readonly batchSeed: number;
      /** Per-sample augmentation: ImageNet's crops and flips are pure functions of (sampleSeed, epoch, sample). */
      readonly sampleSeed: number;
      /** The epoch each requested sample was drawn in (a batch can straddle two). */
      readonly epochs: ArrayLike<number>;
    };

/**
 * NHWC pixels of a batch: float32 already normalised for the model, or uint8 that the device normalises
 * (value · scale[c] + offset[c] per channel) so that decoded images travel at a quarter of the size.
 */
export type Pixels =
  | { readonly type: 'float32'; readonly values: Float32Array }
  | { readonly type: 'uint8'; readonly values: Uint8Array; readonly scale: readonly number[]; readonly offset: readonly number[] };

export interface SampleBatch {
  /** The samples in the batch: those requested, in their order, less any skipped as bad (`data.badSamples: skip`). */
  readonly indices: Uint32Array;
  readonly pixels: Pixels;
  /** Class indices, one per sample. */
  readonly labels: Int32Array;
}

/** Samples stored one after another in a file (a TFRecord shard, a pack): read front to back, they stream. */
export interface StoredShard {
  /** Index of the shard's first sample; its samples are first .. first + count - 1, in file order. */
  readonly first: number;
  readonly count: number;
}

/** A sample that could not be read or decoded, left out of its batch under `data.badSamples: skip`. */
export interface SkippedSample {
  readonly split: 'train' | 'test';
  readonly file: string;
  readonly offset?: number;
  readonly reason: string;
  /** Samples in the split, to judge the fraction that is bad. */
  readonly splitSize: number;
}

export interface SampleSource {
  /** e.g. 'mnist/train' */
  readonly name: string;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  /** How the samples are stored; empty when each can be read alone at no extra cost (memory, one file each). */
  readonly shards: readonly StoredShard[];
  /** The class of a sample, known without reading its pixels. */
  labelOf(index: number): number;
  /** The samples at `indices`, in that order (bad ones left out under a skip policy). */
  read(indices: Uint32Array, purpose: ReadPurpose): Promise<SampleBatch>;
}

/** A run's two sets, and what releases the resources they hold (decode threads). */
export interface TrainingData {
  readonly train: SampleSource;
  readonly test: SampleSource;
  close(): Promise<void>;
}
