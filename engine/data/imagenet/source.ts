import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import type { RunConfig } from '../../../shared/config.js';
import { InputError } from '../../../shared/errors.js';
import type { ReadPurpose, SampleBatch, SampleSource, SkippedSample, StoredShard, TrainingData } from '../source.js';
import { type BadSample, type CatalogSplit, type ImageNetCatalog, openCatalog } from './catalog.js';
import { DecodeError } from './decode.js';
import { type DecodeJob, DecodePool } from './decode-pool.js';
import type { ImageTransform } from './transforms.js';

/**
 * ImageNet as the engine's SampleSources: Part A's catalog says which samples there are, their labels and
 * their encoded bytes (read file by file, records of a shard in offset order); the decode pool turns the
 * bytes into imageSize x imageSize x 3 RGB bytes off the training thread, with the training crop and flip
 * of (phase seed, epoch, sample) or the evaluation centre crop. Pixels travel as bytes and are normalised
 * with ImageNet's mean and std on the device.
 *
 * A sample that cannot be read or decoded is bad input: under `data.badSamples: fail` the read fails with
 * an InputError naming its file and offset; under `skip` it is left out of its batch and the run is told
 * (onSkipped). Never a blank image, never a guessed label.
 */

export type ImageNetData = Extract<RunConfig['data'], { dataset: 'imagenet' }>;

export interface ImageNetOptions {
  readonly onSkipped?: (sample: SkippedSample) => void;
}

/** torchvision's ImageNet mean and standard deviation per RGB channel, in [0, 1] units. */
const MEAN = [0.485, 0.456, 0.406] as const;
const STD = [0.229, 0.224, 0.225] as const;
/** (byte / 255 - mean) / std as byte · scale + offset. */
const SCALE = STD.map((std) => 1 / (255 * std));
const OFFSET = MEAN.map((mean, c) => -mean / STD[c]!);
const CHANNELS = 3;

/** Opens the catalog of `data.dir` (its index cached), checks its classes against `data.classes` and starts the decode threads. */
export async function openImageNet(data: ImageNetData, options: ImageNetOptions = {}): Promise<TrainingData> {
  const catalog = await openCatalog(data.dir, { cacheDir: data.cacheDir ?? defaultCacheDir(), badSamples: data.badSamples });
  return imageNetData(catalog, data, options);
}

/** The training and test sources of an open catalog, with their decode threads. */
export function imageNetData(catalog: ImageNetCatalog, data: ImageNetData, options: ImageNetOptions = {}): TrainingData {
  if (catalog.classes.length !== data.classes)
    throw new InputError('data.classes', `${catalog.root} has ${catalog.classes.length} classes (${catalog.layout} layout), not ${data.classes}`, {
      expected: `data.classes: ${catalog.classes.length} for this dataset, or the dataset with all ${data.classes} classes`,
    });
  for (const [split, which] of [
    [catalog.train, 'training'],
    [catalog.val, 'validation'],
  ] as const) {
    if (split.count === 0) throw new InputError(catalog.root, `the ImageNet ${which} split has no usable sample`, { found: `${split.bad.length} bad ones` });
  }
  const report = options.onSkipped ?? (() => {});
  const pool = new DecodePool(decodeThreads(data));
  const source = (split: CatalogSplit, name: 'train' | 'test', subset: number | undefined) => {
    // Samples found bad while indexing are already left out (under skip): the run is told of them once.
    for (const bad of split.bad) report({ split: name, ...bad, splitSize: split.count + split.bad.length });
    return new ImageNetSource({ split, name, subset, size: data.imageSize, numClasses: data.classes, pool, policy: data.badSamples, report });
  };
  return {
    train: source(catalog.train, 'train', data.trainSubset),
    test: source(catalog.val, 'test', data.testSubset),
    close: () => pool.close(),
  };
}

/** The index cache's default home: the user's cache directory, so that each machine lists a dataset once. */
function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'autoprune');
}

/** The decode threads a worker starts: `data.decodeThreads`, else every core but the one that trains. */
export function decodeThreads(data: ImageNetData): number {
  return data.decodeThreads ?? Math.max(1, availableParallelism() - 1);
}

interface SourceOptions {
  readonly split: CatalogSplit;
  readonly name: 'train' | 'test';
  /** Use only the first N samples. */
  readonly subset: number | undefined;
  readonly size: number;
  readonly numClasses: number;
  readonly pool: DecodePool;
  readonly policy: ImageNetData['badSamples'];
  readonly report: (sample: SkippedSample) => void;
}

class ImageNetSource implements SampleSource {
  readonly name: string;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels = CHANNELS;
  readonly numClasses: number;
  readonly shards: readonly StoredShard[];
  private readonly split: CatalogSplit;

  constructor(private readonly options: SourceOptions) {
    const { split, subset } = options;
    this.split = split;
    this.name = `imagenet/${options.name}`;
    this.count = subset === undefined ? split.count : Math.min(subset, split.count);
    this.height = options.size;
    this.width = options.size;
    this.numClasses = options.numClasses;
    // A subset keeps the shards it reaches into, cut at its end.
    this.shards = split.shards.filter((s) => s.first < this.count).map((s) => ({ first: s.first, count: Math.min(s.count, this.count - s.first) }));
  }

  labelOf(index: number): number {
    this.requireIndex(index);
    return this.split.labelOf(index);
  }

  async read(indices: Uint32Array, purpose: ReadPurpose): Promise<SampleBatch> {
    for (const index of indices) this.requireIndex(index);
    const encoded = await this.split.readEncoded([...indices]);
    const bad: Array<{ readonly index: number; readonly sample: BadSample }> = [];
    const jobs: DecodeJob[] = [];
    const decodedIndices: number[] = [];
    encoded.forEach((sample, position) => {
      if ('bad' in sample) bad.push({ index: sample.index, sample: sample.bad });
      else {
        jobs.push({ bytes: sample.bytes, transform: this.transform(purpose, position, sample.index) });
        decodedIndices.push(sample.index);
      }
    });
    const decoded = await this.options.pool.decode(jobs);
    const good: Array<{ readonly index: number; readonly pixels: Uint8Array }> = [];
    decoded.forEach((result, j) => {
      const index = decodedIndices[j]!;
      if (result instanceof DecodeError) bad.push({ index, sample: { ...this.locate(index), reason: result.message } });
      else good.push({ index, pixels: result });
    });
    for (const { index, sample } of bad) this.badSample(index, sample);
    return this.batchOf(good);
  }

  private transform(purpose: ReadPurpose, position: number, sample: number): ImageTransform {
    const size = this.options.size;
    if (purpose.kind === 'evaluate') return { kind: 'eval', size };
    return { kind: 'train', size, seed: purpose.sampleSeed, epoch: purpose.epochs[position]!, sample };
  }

  /** A bad sample fails the read (`fail`) or is reported and left out (`skip`). */
  private badSample(index: number, sample: BadSample): void {
    const where = sample.offset === undefined ? sample.file : `${sample.file} at byte ${sample.offset}`;
    if (this.options.policy === 'fail')
      throw new InputError(where, `bad ${this.options.name} sample ${index}: ${sample.reason}`, {
        expected: 'an image that decodes (or data.badSamples: skip to leave such samples out)',
      });
    this.options.report({ split: this.options.name, ...sample, splitSize: this.split.count + this.split.bad.length });
  }

  private batchOf(good: ReadonlyArray<{ readonly index: number; readonly pixels: Uint8Array }>): SampleBatch {
    const sampleBytes = this.height * this.width * CHANNELS;
    const values = new Uint8Array(good.length * sampleBytes);
    good.forEach(({ index, pixels }, i) => {
      if (pixels.length !== sampleBytes) throw new Error(`the decoder gave ${pixels.length} bytes for sample ${index}, not ${sampleBytes}`);
      values.set(pixels, i * sampleBytes);
    });
    return {
      indices: Uint32Array.from(good, (g) => g.index),
      pixels: { type: 'uint8', values, scale: SCALE, offset: OFFSET },
      labels: Int32Array.from(good, (g) => this.split.labelOf(g.index)),
    };
  }

  /** The file and offset of a sample, from the catalog's `file` or `file@offset`. */
  private locate(index: number): { file: string; offset?: number } {
    const described = this.split.describe(index);
    const at = described.lastIndexOf('@');
    if (this.split.shards.length > 0 && at > 0 && /^\d+$/.test(described.slice(at + 1))) {
      return { file: described.slice(0, at), offset: Number(described.slice(at + 1)) };
    }
    return { file: described };
  }

  private requireIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) throw new RangeError(`sample ${index} is not in ${this.name} (count ${this.count})`);
  }
}
