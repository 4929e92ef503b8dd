/**
 * The in-memory image dataset the engine trains on, plus the file helpers shared by the loaders.
 * Pure Node (no TensorFlow), so any process can load and slice data.
 */
import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { describeValue, InputError } from '../../shared/errors.js';

export interface ImageDataset {
  /** e.g. 'mnist/train' */
  readonly name: string;
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
  /** count*height*width*channels values, NHWC, already normalised for the model. */
  readonly images: Float32Array;
  /** count class indices, each < numClasses. */
  readonly labels: Uint8Array;
}

export function sampleSize(ds: ImageDataset): number {
  return ds.height * ds.width * ds.channels;
}

/** The first `count` samples. Shares memory with `ds` (no copy), since datasets are never mutated. */
export function subset(ds: ImageDataset, count: number): ImageDataset {
  if (!Number.isInteger(count) || count < 1 || count > ds.count) {
    throw new InputError(`dataset ${ds.name}`, 'subset size out of range', {
      expected: `an integer from 1 to ${ds.count}`,
      found: describeValue(count),
    });
  }
  return {
    ...ds,
    name: `${ds.name}[:${count}]`,
    count,
    images: ds.images.subarray(0, count * sampleSize(ds)),
    labels: ds.labels.subarray(0, count),
  };
}

/** Copies the samples at `indices` (in that order) into fresh contiguous arrays. */
export function gatherBatch(ds: ImageDataset, indices: ArrayLike<number>): { images: Float32Array; labels: Uint8Array } {
  const size = sampleSize(ds);
  const images = new Float32Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]!;
    // Out-of-range indices come from our own samplers, so they are bugs, not input errors.
    if (!Number.isInteger(index) || index < 0 || index >= ds.count) {
      throw new RangeError(`gatherBatch: index ${index} out of range for ${ds.name} (count ${ds.count})`);
    }
    images.set(ds.images.subarray(index * size, (index + 1) * size), i * size);
    labels[i] = ds.labels[index]!;
  }
  return { images, labels };
}

/** Throws an InputError unless `dir` exists and is a directory. */
export async function requireDataDirectory(dir: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(dir)).isDirectory();
  } catch (error) {
    throw fileSystemError(dir, 'data directory', error);
  }
  if (!isDirectory) throw new InputError(dir, 'data directory is not a directory');
}

/** Size in bytes of a data file, with an InputError if it is missing or not a regular file. */
export async function dataFileSize(path: string): Promise<number> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    throw fileSystemError(path, 'data file', error);
  }
  if (!info.isFile()) throw new InputError(path, 'data file is not a regular file');
  return info.size;
}

/** Reads a whole data file, turning file-system failures into InputErrors naming the file. */
export async function readDataFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw fileSystemError(path, 'data file', error);
  }
}

function fileSystemError(path: string, what: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new InputError(path, `${what} not found`);
  if (code === 'EISDIR') return new InputError(path, `${what} is a directory, not a file`);
  if (code === 'EACCES' || code === 'EPERM') return new InputError(path, `${what} is not readable (permission denied)`);
  if (code !== undefined) return new InputError(path, `cannot read ${what} (${code})`);
  return error instanceof Error ? error : new Error(String(error));
}
