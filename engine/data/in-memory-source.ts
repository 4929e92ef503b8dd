import { seededUniform } from '../random.js';
import { gatherBatch, type ImageDataset } from './dataset.js';
import type { ReadPurpose, SampleBatch, SampleSource, TrainingData } from './source.js';

/** Per-batch image augmentation (CIFAR-10's crops and flips), deterministic in `uniform`. */
export type BatchAugmentation = (images: Float32Array, count: number, uniform: () => number) => Float32Array;

/**
 * A set held in memory (MNIST, CIFAR-10) as a SampleSource: batches are copied rows, already normalised;
 * a training batch is augmented from its batch seed, as the step loop always did.
 */
export function inMemorySource(dataset: ImageDataset, augment?: BatchAugmentation): SampleSource {
  return {
    name: dataset.name,
    count: dataset.count,
    height: dataset.height,
    width: dataset.width,
    channels: dataset.channels,
    numClasses: dataset.numClasses,
    shards: [],
    labelOf: (index) => {
      if (!Number.isInteger(index) || index < 0 || index >= dataset.count)
        throw new RangeError(`sample ${index} is not in ${dataset.name} (count ${dataset.count})`);
      return dataset.labels[index]!;
    },
    read: async (indices: Uint32Array, purpose: ReadPurpose): Promise<SampleBatch> => {
      const rows = gatherBatch(dataset, indices);
      const images = augment && purpose.kind === 'train' ? augment(rows.images, indices.length, seededUniform(purpose.batchSeed, 'augment')) : rows.images;
      return { indices: Uint32Array.from(indices), pixels: { type: 'float32', values: images }, labels: Int32Array.from(rows.labels) };
    },
  };
}

/** A training and a test set held in memory; nothing to release. */
export function inMemoryData(train: ImageDataset, test: ImageDataset, augment?: BatchAugmentation): TrainingData {
  return { train: inMemorySource(train, augment), test: inMemorySource(test), close: async () => {} };
}
