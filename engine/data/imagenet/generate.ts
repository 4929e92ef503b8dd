import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import { frameRecords } from '../../../shared/tfrecord-framing.js';
import { deriveSeed, seededUniform } from '../../random.js';
import { loadExampleType } from './example.js';
import { modelsExample } from './example-keys.js';
import { mapLimited } from './parallel.js';
import { photoLikeJpeg, type Rgb } from './photo-like.js';

/**
 * A small ImageNet-like dataset written for real (`autoprune data generate`, and the tests): photo-like
 * JPEGs of a few classes named by WordNet-like IDs, as image folders (train/<wnid>/, val/<wnid>/, the
 * valprep.sh layout) or as TFRecord shards as the tensorflow/models builder writes them. Each class has a
 * palette of its own, so a network can learn to tell the classes apart. The same seed draws the same images
 * in either format.
 */

export const GENERATED_FORMATS = ['folders', 'tfrecord'] as const;
export type GeneratedFormat = (typeof GENERATED_FORMATS)[number];

export interface GenerateOptions {
  readonly classes: number;
  /** Training images per class. */
  readonly perClass: number;
  /** Validation images per class. */
  readonly valPerClass: number;
  /** The shorter (vertical) side in pixels; widths go from it to a quarter more, as photos' do. */
  readonly size: number;
  readonly format: GeneratedFormat;
  readonly seed: number;
  /** TFRecord training shards (at most the training images); the validation split gets one per 8, as the builder's 1024 and 128. */
  readonly shards: number;
}

/** How the writing goes: images encoded at once, and a report after each. */
export interface GenerateWork {
  readonly parallel: number;
  readonly progress?: (done: number, total: number) => void;
}

export interface GeneratedDataset {
  readonly dir: string;
  readonly train: number;
  readonly val: number;
  readonly files: number;
  readonly bytes: number;
}

/** The WordNet-like ID of generated class `c` (0 to 8999): n0 and seven digits, in the classes' order when sorted. */
export function generatedWnid(c: number): string {
  return `n0${1_000_000 + c * 1111}`;
}

/** One image of the plan: its split, class, place among its class's images, and file name as ImageNet names it. */
export interface PlannedImage {
  readonly split: 'train' | 'val';
  readonly label: number;
  readonly index: number;
  readonly name: string;
}

/** Every image of each split in writing order: the classes in turn, as a builder's shuffled shards mix them. */
export function plannedImages(options: Pick<GenerateOptions, 'classes' | 'perClass' | 'valPerClass'>): Record<'train' | 'val', PlannedImage[]> {
  const split = (kind: 'train' | 'val', perClass: number) =>
    Array.from({ length: options.classes * perClass }, (_, k): PlannedImage => {
      const label = k % options.classes;
      const index = Math.floor(k / options.classes);
      const name = kind === 'train' ? `${generatedWnid(label)}_${index}.JPEG` : `ILSVRC2012_val_${String(k + 1).padStart(8, '0')}.JPEG`;
      return { split: kind, label, index, name };
    });
  return { train: split('train', options.perClass), val: split('val', options.valPerClass) };
}

/** `count` items in `shards` consecutive ranges [from, to) of equal size (to one). */
export function shardRanges(count: number, shards: number): Array<readonly [number, number]> {
  return Array.from({ length: shards }, (_, s) => [Math.floor((s * count) / shards), Math.floor(((s + 1) * count) / shards)] as const);
}

/** A shard's file name as the builder writes it: `train-00003-of-00008`. */
export function shardName(split: 'train' | 'validation', shard: number, of: number): string {
  return `${split}-${String(shard).padStart(5, '0')}-of-${String(of).padStart(5, '0')}`;
}

/**
 * Writes the dataset into `dir`, which must not exist or be empty. It is written beside it under a
 * temporary name and renamed into place when complete, so an interrupted run leaves nothing that looks
 * like a dataset.
 */
export async function generateImageNet(dir: string, options: GenerateOptions, work: GenerateWork): Promise<GeneratedDataset> {
  const images = plannedImages(options);
  if (options.format === 'tfrecord' && !(options.shards >= 1 && options.shards <= images.train.length)) {
    throw new InputError('--shards', `must be from 1 to the ${images.train.length} training images`, { found: String(options.shards) });
  }
  await refuseExisting(dir);
  const staging = join(dirname(dir), `.${basename(dir)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
  const total = images.train.length + images.val.length;
  let done = 0;
  const draw = async (image: PlannedImage) => {
    const jpeg = await drawImage(image, options);
    work.progress?.(++done, total);
    return jpeg;
  };
  try {
    await mkdir(staging, { recursive: true });
    const written = options.format === 'folders' ? await writeFolders(staging, images, draw, work) : await writeShards(staging, images, options, draw, work);
    await rmdir(dir).catch(() => undefined);
    await rename(staging, dir);
    return { dir, train: images.train.length, val: images.val.length, ...written };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error instanceof InputError ? error : fileSystemError(dir, 'write the dataset', error);
  }
}

async function refuseExisting(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileSystemError(dir, 'read the folder', error);
  }
  if (entries.length > 0) throw new InputError(dir, 'already holds files: refusing to write a dataset into it', { expected: 'a new or empty folder' });
}

/** The image's pixels come from (seed, split, class, index), so both formats hold the same images. */
function drawImage(image: PlannedImage, options: GenerateOptions): Promise<Buffer> {
  const width = options.size + Math.round(((image.index % 3) * options.size) / 8);
  const seed = deriveSeed(options.seed, 'generated-imagenet', image.split, image.label, image.index);
  return photoLikeJpeg(seed, width, options.size, 90, classPalette(options.seed, image.label));
}

function classPalette(seed: number, label: number): Rgb {
  const uniform = seededUniform(seed, 'generated-imagenet-palette', label);
  return [Math.floor(uniform() * 256), Math.floor(uniform() * 256), Math.floor(uniform() * 256)];
}

type Draw = (image: PlannedImage) => Promise<Buffer>;

async function writeFolders(root: string, images: Record<'train' | 'val', PlannedImage[]>, draw: Draw, work: GenerateWork) {
  const sizes = await mapLimited([...images.train, ...images.val], work.parallel, async (image) => {
    const folder = join(root, image.split, generatedWnid(image.label));
    await mkdir(folder, { recursive: true });
    const jpeg = await draw(image);
    await writeFile(join(folder, image.name), jpeg);
    return jpeg.length;
  });
  return { files: sizes.length, bytes: sizes.reduce((sum, n) => sum + n, 0) };
}

async function writeShards(root: string, images: Record<'train' | 'val', PlannedImage[]>, options: GenerateOptions, draw: Draw, work: GenerateWork) {
  const exampleType = loadExampleType();
  const shards = [
    { split: 'train' as const, images: images.train, count: options.shards },
    { split: 'validation' as const, images: images.val, count: Math.min(images.val.length, Math.ceil(options.shards / 8)) },
  ].flatMap(({ split, images: all, count }) =>
    shardRanges(all.length, count).map(([from, to], s) => ({ name: shardName(split, s, count), images: all.slice(from, to) })),
  );
  let bytes = 0;
  for (const shard of shards) {
    const records = await mapLimited(shard.images, work.parallel, async (image) =>
      modelsExample(exampleType, await draw(image), image.label, generatedWnid(image.label), image.name),
    );
    const file = frameRecords(records).bytes;
    await writeFile(join(root, shard.name), file);
    bytes += file.length;
  }
  return { files: shards.length, bytes };
}
