import type { RunConfig } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import { augmentCifarBatch, loadCifar10 } from './cifar10.js';
import { type ImageDataset, subset } from './dataset.js';
import { openImageNet } from './imagenet/source.js';
import { inMemoryData } from './in-memory-source.js';
import { loadMnist } from './mnist.js';
import type { SkippedSample, TrainingData } from './source.js';

export interface LoadOptions {
  /** Told of every sample left out as bad (`data.badSamples: skip`). */
  readonly onSkipped?: (sample: SkippedSample) => void;
}

/** Opens the dataset a run config names, cut to its subsets, with the dataset's augmentation. */
export async function loadTrainingData(data: RunConfig['data'], options: LoadOptions = {}): Promise<TrainingData> {
  if (data.dataset === 'imagenet') return openImageNet(data, options);
  let sets: { train: ImageDataset; test: ImageDataset };
  if (data.dataset === 'mnist') sets = await loadMnist(data.dir === undefined ? {} : { dir: data.dir });
  else {
    if (data.dir === undefined)
      throw new InputError('data.dir', 'is required for cifar10', {
        expected: 'the directory holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin',
      });
    sets = await loadCifar10(data.dir);
  }
  if (data.augment && data.dataset !== 'cifar10') {
    throw new InputError('data.augment', `has no augmentation for ${data.dataset}`, { expected: 'false or omitted' });
  }
  const augment = data.augment ?? data.dataset === 'cifar10';
  return inMemoryData(
    data.trainSubset === undefined ? sets.train : subset(sets.train, data.trainSubset),
    data.testSubset === undefined ? sets.test : subset(sets.test, data.testSubset),
    augment ? augmentCifarBatch : undefined,
  );
}

/** Image shape and class count of a dataset, known without reading it (the coordinator builds networks from it). */
export function datasetShape(data: RunConfig['data']): { height: number; width: number; channels: number; numClasses: number } {
  switch (data.dataset) {
    case 'mnist':
      return { height: 28, width: 28, channels: 1, numClasses: 10 };
    case 'cifar10':
      return { height: 32, width: 32, channels: 3, numClasses: 10 };
    case 'imagenet':
      return { height: data.imageSize, width: data.imageSize, channels: 3, numClasses: data.classes };
  }
}
