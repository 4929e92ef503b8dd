/**
 * CIFAR-10 from the official binary files, and the standard training augmentation.
 * Each record is 1 label byte then 3072 pixel bytes: the 32x32 red plane, then green, then blue,
 * each row-major. Records are converted to NHWC float32 normalised per channel.
 */
import { join } from 'node:path';
import { InputError } from '../../shared/errors.js';
import { dataFileSize, type ImageDataset, readDataFile, requireDataDirectory } from './dataset.js';

export const CIFAR10_SIZE = 32;
export const CIFAR10_CHANNELS = 3;
export const CIFAR10_CLASSES = 10;
/** Per-channel (R, G, B) mean and std of the training set, on pixels scaled to [0, 1]. */
export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465] as const;
export const CIFAR10_STD = [0.247, 0.2435, 0.2616] as const;

const PLANE_BYTES = CIFAR10_SIZE * CIFAR10_SIZE;
const PIXEL_BYTES = PLANE_BYTES * CIFAR10_CHANNELS;
const RECORD_BYTES = 1 + PIXEL_BYTES;
const TRAIN_FILES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'];
const TEST_FILES = ['test_batch.bin'];

/** Padding of the standard random-crop augmentation, in pixels per side. */
export const CIFAR10_CROP_PADDING = 4;

export async function loadCifar10(dir: string): Promise<{ train: ImageDataset; test: ImageDataset }> {
  await requireDataDirectory(dir);
  // Check every file's presence and size before reading, so a bad test batch fails fast.
  const trainPaths = TRAIN_FILES.map((file) => join(dir, file));
  const testPaths = TEST_FILES.map((file) => join(dir, file));
  const trainCounts = await Promise.all(trainPaths.map(recordCount));
  const testCounts = await Promise.all(testPaths.map(recordCount));
  const train = await loadSplit('cifar10/train', trainPaths, trainCounts);
  const test = await loadSplit('cifar10/test', testPaths, testCounts);
  return { train, test };
}

async function recordCount(path: string): Promise<number> {
  const size = await dataFileSize(path);
  if (size === 0 || size % RECORD_BYTES !== 0) {
    const lower = Math.floor(size / RECORD_BYTES) * RECORD_BYTES;
    const nearest = lower === 0 ? `${RECORD_BYTES}` : `${lower} or ${lower + RECORD_BYTES}`;
    throw new InputError(path, `size is not a whole number of ${RECORD_BYTES}-byte CIFAR-10 records`, {
      expected: `a positive multiple of ${RECORD_BYTES} bytes (nearest: ${nearest})`,
      found: `${size} bytes`,
    });
  }
  return size / RECORD_BYTES;
}

async function loadSplit(name: string, paths: string[], counts: number[]): Promise<ImageDataset> {
  const count = counts.reduce((sum, n) => sum + n, 0);
  const images = new Float32Array(count * PIXEL_BYTES);
  const labels = new Uint8Array(count);
  const normalise = normalisationTable();
  let firstRecord = 0;
  // Files are read one at a time so only one raw batch is in memory next to the output.
  for (let f = 0; f < paths.length; f++) {
    const path = paths[f]!;
    const bytes = await readDataFile(path);
    const fileCount = bytes.length / RECORD_BYTES;
    if (fileCount !== counts[f]) {
      throw new InputError(path, 'file changed size while loading', {
        expected: `${counts[f]! * RECORD_BYTES} bytes`,
        found: `${bytes.length} bytes`,
      });
    }
    decodeRecords(bytes, path, images, labels, firstRecord, normalise);
    firstRecord += fileCount;
  }
  return {
    name,
    count,
    height: CIFAR10_SIZE,
    width: CIFAR10_SIZE,
    channels: CIFAR10_CHANNELS,
    numClasses: CIFAR10_CLASSES,
    images,
    labels,
  };
}

/** normalised value of byte b in channel c is table[c * 256 + b]; a lookup is much faster than dividing. */
function normalisationTable(): Float32Array {
  const table = new Float32Array(CIFAR10_CHANNELS * 256);
  for (let c = 0; c < CIFAR10_CHANNELS; c++) {
    for (let b = 0; b < 256; b++) table[c * 256 + b] = (b / 255 - CIFAR10_MEAN[c]!) / CIFAR10_STD[c]!;
  }
  return table;
}

function decodeRecords(bytes: Uint8Array, path: string, images: Float32Array, labels: Uint8Array, firstRecord: number, normalise: Float32Array): void {
  const fileCount = bytes.length / RECORD_BYTES;
  for (let r = 0; r < fileCount; r++) {
    const recordStart = r * RECORD_BYTES;
    const label = bytes[recordStart]!;
    if (label >= CIFAR10_CLASSES) {
      throw new InputError(`${path}, record ${r} (byte ${recordStart})`, 'label out of range', {
        expected: `a class index from 0 to ${CIFAR10_CLASSES - 1}`,
        found: String(label),
      });
    }
    labels[firstRecord + r] = label;
    // One pass per pixel writing its three channels contiguously: sequential writes dominate the cost.
    let out = (firstRecord + r) * PIXEL_BYTES;
    const red = recordStart + 1;
    for (let p = 0; p < PLANE_BYTES; p++, out += CIFAR10_CHANNELS) {
      images[out] = normalise[bytes[red + p]!]!;
      images[out + 1] = normalise[256 + bytes[red + PLANE_BYTES + p]!]!;
      images[out + 2] = normalise[512 + bytes[red + 2 * PLANE_BYTES + p]!]!;
    }
  }
}

/**
 * The standard CIFAR training augmentation on a batch of NHWC 32x32x3 images: a random 32x32 crop
 * of the image zero-padded by 4 pixels per side, then a horizontal flip with probability 1/2.
 * Padding is 0 in the normalised input, i.e. the mean colour. Per image, rng is called three
 * times (row offset, column offset, flip), so the result is deterministic given rng.
 */
export function augmentCifarBatch(images: Float32Array, count: number, rng: () => number): Float32Array {
  if (images.length !== count * PIXEL_BYTES) {
    throw new RangeError(`augmentCifarBatch: ${images.length} values is not ${count} images of 32x32x3`);
  }
  const out = new Float32Array(images.length);
  const offsets = 2 * CIFAR10_CROP_PADDING + 1;
  const rowStride = CIFAR10_SIZE * CIFAR10_CHANNELS;
  for (let n = 0; n < count; n++) {
    // Shift of the crop relative to the unpadded image, in [-4, 4]; min() guards an rng that returns 1.
    const dy = Math.min(Math.floor(rng() * offsets), offsets - 1) - CIFAR10_CROP_PADDING;
    const dx = Math.min(Math.floor(rng() * offsets), offsets - 1) - CIFAR10_CROP_PADDING;
    const flip = rng() < 0.5;
    const imageStart = n * PIXEL_BYTES;
    for (let y = 0; y < CIFAR10_SIZE; y++) {
      const sy = y + dy;
      if (sy < 0 || sy >= CIFAR10_SIZE) continue; // padding row: stays 0
      for (let x = 0; x < CIFAR10_SIZE; x++) {
        const sx = (flip ? CIFAR10_SIZE - 1 - x : x) + dx;
        if (sx < 0 || sx >= CIFAR10_SIZE) continue;
        const from = imageStart + sy * rowStride + sx * CIFAR10_CHANNELS;
        const to = imageStart + y * rowStride + x * CIFAR10_CHANNELS;
        out[to] = images[from]!;
        out[to + 1] = images[from + 1]!;
        out[to + 2] = images[from + 2]!;
      }
    }
  }
  return out;
}
