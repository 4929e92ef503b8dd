import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { augmentCifarBatch, CIFAR10_MEAN, CIFAR10_STD, loadCifar10 } from '../../engine/data/cifar10.js';
import { gatherBatch, type ImageDataset, subset } from '../../engine/data/dataset.js';
import { parseIdx, readIdx } from '../../engine/data/idx.js';
import { loadMnist, MNIST_FILES, normaliseMnistPixels } from '../../engine/data/mnist.js';
import { InputError } from '../../shared/errors.js';

/** Asserts that `promiseOrFn` fails with an InputError whose message contains every fragment. */
async function assertInputError(promiseOrFn: Promise<unknown> | (() => unknown), ...fragments: string[]) {
  let caught: unknown;
  try {
    await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof InputError, `expected an InputError, got ${String(caught)}`);
  for (const fragment of fragments) {
    assert.ok(caught.message.includes(fragment), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(fragment)}`);
  }
}

/** Builds an IDX file: 0x00 0x00 dtype ndims, big-endian uint32 dims, then `payload`. */
function idxBytes(dtypeCode: number, dims: number[], payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = dtypeCode;
  header[3] = dims.length;
  dims.forEach((dim, i) => header.writeUInt32BE(dim, 4 + 4 * i));
  return Buffer.concat([header, payload]);
}

let tempRoot: string;
let dirCounter = 0;
function freshDir(): string {
  const dir = join(tempRoot, `case-${dirCounter++}`);
  mkdirSync(dir);
  return dir;
}

before(() => {
  tempRoot = mkdtempSync(join(tmpdir(), 'autoprune-data-test-'));
});
after(() => {
  rmSync(tempRoot, { recursive: true, force: true });
});

describe('IDX reader', () => {
  it('reads a uint8 IDX file as a view with its dims', async () => {
    const path = join(freshDir(), 'ok-idx3-ubyte');
    writeFileSync(path, idxBytes(0x08, [2, 2, 3], Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255])));
    const idx = await readIdx(path);
    assert.equal(idx.dtype, 'uint8');
    assert.deepEqual(idx.dims, [2, 2, 3]);
    assert.ok(idx.data instanceof Uint8Array);
    assert.deepEqual(Array.from(idx.data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]);
  });

  it('decodes wider dtypes big-endian', () => {
    const payload = Buffer.alloc(8 + 4);
    payload.writeInt32BE(-2, 0);
    payload.writeInt32BE(70000, 4);
    payload.writeFloatBE(1.5, 8);
    assert.deepEqual(Array.from(parseIdx(idxBytes(0x0c, [2], payload.subarray(0, 8)), 'mem').data), [-2, 70000]);
    const floats = parseIdx(idxBytes(0x0d, [1], payload.subarray(8)), 'mem');
    assert.equal(floats.dtype, 'float32');
    assert.deepEqual(Array.from(floats.data), [1.5]);
  });

  it('rejects a wrong magic number', async () => {
    const path = join(freshDir(), 'bad-magic');
    const bytes = idxBytes(0x08, [1], Uint8Array.from([7]));
    bytes[1] = 0x12;
    writeFileSync(path, bytes);
    await assertInputError(readIdx(path), path, 'magic', 'expected magic starting with bytes 0x00 0x00', 'found 0x00 0x12');
  });

  it('rejects an unknown dtype code', async () => {
    const path = join(freshDir(), 'bad-dtype');
    writeFileSync(path, idxBytes(0x0a, [1], Uint8Array.from([7])));
    await assertInputError(readIdx(path), path, 'dtype', 'expected one of 0x08 (uint8)', 'found 0x0a');
  });

  it('rejects a truncated file with expected and found byte counts', async () => {
    const path = join(freshDir(), 'truncated');
    writeFileSync(path, idxBytes(0x08, [3, 28, 28], new Uint8Array(3 * 784 - 5)));
    await assertInputError(readIdx(path), path, 'truncated', `expected ${16 + 3 * 784} bytes`, `found ${16 + 3 * 784 - 5} bytes`);
  });

  it('rejects a truncated header', async () => {
    const path = join(freshDir(), 'short-header');
    writeFileSync(path, idxBytes(0x08, [3, 28, 28], new Uint8Array(0)).subarray(0, 10));
    await assertInputError(readIdx(path), path, 'header', 'expected at least 16 bytes', 'found 10 bytes');
  });

  it('rejects an oversized file with expected and found byte counts', async () => {
    const path = join(freshDir(), 'oversized');
    writeFileSync(path, idxBytes(0x08, [4], new Uint8Array(6)));
    await assertInputError(readIdx(path), path, 'trailing bytes', 'expected 12 bytes', 'found 14 bytes');
  });

  it('names a missing file', async () => {
    const path = join(freshDir(), 'nope-idx1-ubyte');
    await assertInputError(readIdx(path), path, 'not found');
  });
});

describe('MNIST loader', () => {
  let mnist: { train: ImageDataset; test: ImageDataset };

  before(async function () {
    this.timeout(10_000);
    mnist = await loadMnist({}); // verifies the official md5s by default
  });

  it('loads the packaged files with official counts and shapes', () => {
    assert.equal(mnist.train.name, 'mnist/train');
    assert.equal(mnist.train.count, 60000);
    assert.equal(mnist.test.count, 10000);
    for (const ds of [mnist.train, mnist.test]) {
      assert.equal(ds.height, 28);
      assert.equal(ds.width, 28);
      assert.equal(ds.channels, 1);
      assert.equal(ds.numClasses, 10);
      assert.equal(ds.images.length, ds.count * 784);
      assert.equal(ds.labels.length, ds.count);
    }
    assert.equal(mnist.train.labels[0], 5);
    assert.equal(mnist.test.labels[0], 7);
  });

  it('scales pixels to [0, 1]', () => {
    let min = Infinity;
    let max = -Infinity;
    for (const v of mnist.train.images.subarray(0, 784 * 100)) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    assert.equal(min, 0);
    assert.equal(max, 1);
    assert.deepEqual(Array.from(normaliseMnistPixels(Uint8Array.from([0, 51, 255]))), [0, Math.fround(0.2), 1]);
  });

  /** Writes a small valid MNIST directory: 3 train images (labels `trainLabels`), 2 test images. */
  function writeSmallMnist(trainLabels = [1, 2, 3]): string {
    const dir = freshDir();
    const pixels = (n: number) => Uint8Array.from({ length: n * 784 }, (_, i) => i % 256);
    writeFileSync(join(dir, MNIST_FILES.train.images), idxBytes(0x08, [3, 28, 28], pixels(3)));
    writeFileSync(join(dir, MNIST_FILES.train.labels), idxBytes(0x08, [trainLabels.length], Uint8Array.from(trainLabels)));
    writeFileSync(join(dir, MNIST_FILES.test.images), idxBytes(0x08, [2, 28, 28], pixels(2)));
    writeFileSync(join(dir, MNIST_FILES.test.labels), idxBytes(0x08, [2], Uint8Array.from([9, 0])));
    return dir;
  }

  it('loads a directory of small valid files without checksums', async () => {
    const { train, test } = await loadMnist({ dir: writeSmallMnist() });
    assert.equal(train.count, 3);
    assert.deepEqual(Array.from(train.labels), [1, 2, 3]);
    assert.deepEqual(Array.from(test.labels), [9, 0]);
    assert.equal(train.images[255], 1);
    assert.equal(train.images[256], 0);
  });

  it('rejects a label out of range, naming file, index and value', async () => {
    const dir = writeSmallMnist([1, 10, 3]);
    const path = join(dir, MNIST_FILES.train.labels);
    await assertInputError(loadMnist({ dir }), path, 'label 1', 'out of range', 'found 10');
  });

  it('rejects image and label counts that disagree', async () => {
    const dir = writeSmallMnist([1, 2]);
    await assertInputError(loadMnist({ dir }), join(dir, MNIST_FILES.train.labels), 'expected 3 labels', 'found 2 labels');
  });

  it('rejects images that are not 28x28', async () => {
    const dir = writeSmallMnist();
    const path = join(dir, MNIST_FILES.test.images);
    writeFileSync(path, idxBytes(0x08, [2, 14, 14], new Uint8Array(2 * 196)));
    await assertInputError(loadMnist({ dir }), path, 'expected 28x28', 'found 14x14');
  });

  it('reports md5 mismatches when asked to verify', async () => {
    const dir = writeSmallMnist();
    await assertInputError(loadMnist({ dir, verifyChecksums: true }), 'md5', 'expected md5 ', 'found md5 ');
  });

  it('names a missing directory and a missing file', async () => {
    const missingDir = join(tempRoot, 'no-such-mnist');
    await assertInputError(loadMnist({ dir: missingDir }), missingDir, 'directory not found');
    const dir = writeSmallMnist();
    const path = join(dir, MNIST_FILES.test.labels);
    rmSync(path);
    await assertInputError(loadMnist({ dir }), path, 'not found');
  });
});

describe('CIFAR-10 loader', () => {
  const RECORDS_PER_BATCH = 7;
  const RECORD = 3073;

  /** Pixel byte of record r, channel c, pixel position p (row-major): distinct and reproducible. */
  const pixelByte = (r: number, c: number, p: number) => (r * 31 + c * 101 + p * 7) % 256;

  function cifarBatch(firstRecord: number, records: number): Buffer {
    const bytes = Buffer.alloc(records * RECORD);
    for (let r = 0; r < records; r++) {
      bytes[r * RECORD] = (firstRecord + r) % 10;
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < 1024; p++) bytes[r * RECORD + 1 + c * 1024 + p] = pixelByte(firstRecord + r, c, p);
      }
    }
    return bytes;
  }

  function writeCifarDir(): string {
    const dir = freshDir();
    for (let b = 0; b < 5; b++) {
      writeFileSync(join(dir, `data_batch_${b + 1}.bin`), cifarBatch(b * RECORDS_PER_BATCH, RECORDS_PER_BATCH));
    }
    writeFileSync(join(dir, 'test_batch.bin'), cifarBatch(1000, 3));
    return dir;
  }

  const normalised = (byte: number, c: number) => Math.fround((byte / 255 - CIFAR10_MEAN[c]!) / CIFAR10_STD[c]!);

  it('converts planar records to normalised NHWC', async () => {
    const { train, test } = await loadCifar10(writeCifarDir());
    assert.equal(train.name, 'cifar10/train');
    assert.equal(train.count, 5 * RECORDS_PER_BATCH);
    assert.equal(test.count, 3);
    assert.equal(train.height, 32);
    assert.equal(train.width, 32);
    assert.equal(train.channels, 3);
    assert.equal(train.images.length, train.count * 3072);
    assert.deepEqual(Array.from(train.labels.subarray(0, 12)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert.deepEqual(Array.from(test.labels), [0, 1, 2]);

    // Record 9 lives in data_batch_2; check pixel (row 5, col 17) in all channels, and a corner.
    for (const [r, y, x] of [
      [9, 5, 17],
      [0, 0, 0],
      [34, 31, 31],
    ] as const) {
      for (let c = 0; c < 3; c++) {
        const nhwc = train.images[r * 3072 + (y * 32 + x) * 3 + c];
        assert.equal(nhwc, normalised(pixelByte(r, c, y * 32 + x), c), `record ${r} (${y},${x}) channel ${c}`);
      }
    }
    assert.equal(test.images[2 * 3072 + 3 * 3 + 1], normalised(pixelByte(1002, 1, 3), 1));
  });

  it('normalises known bytes with the standard mean and std', async () => {
    const dir = writeCifarDir();
    const record = Buffer.alloc(RECORD);
    record[0] = 4;
    record.fill(255, 1, 1 + 1024); // red plane white
    record.fill(0, 1 + 1024, 1 + 2048); // green plane black
    record.fill(128, 1 + 2048); // blue plane grey
    writeFileSync(join(dir, 'test_batch.bin'), record);
    const { test } = await loadCifar10(dir);
    assert.deepEqual(Array.from(test.images.subarray(0, 3)), [
      Math.fround((1 - 0.4914) / 0.247),
      Math.fround((0 - 0.4822) / 0.2435),
      Math.fround((128 / 255 - 0.4465) / 0.2616),
    ]);
    assert.equal(test.labels[0], 4);
  });

  it('rejects a file whose size is not a multiple of 3073', async () => {
    const dir = writeCifarDir();
    const path = join(dir, 'data_batch_3.bin');
    writeFileSync(path, cifarBatch(0, 3).subarray(0, 2 * RECORD + 100));
    await assertInputError(loadCifar10(dir), path, 'multiple of 3073', 'nearest: 6146 or 9219', `found ${2 * RECORD + 100} bytes`);
  });

  it('rejects label 10, naming file, record and value', async () => {
    const dir = writeCifarDir();
    const path = join(dir, 'data_batch_4.bin');
    const bytes = cifarBatch(0, RECORDS_PER_BATCH);
    bytes[3 * RECORD] = 10;
    writeFileSync(path, bytes);
    await assertInputError(loadCifar10(dir), path, 'record 3', 'out of range', 'expected a class index from 0 to 9', 'found 10');
  });

  it('names a missing test_batch.bin and a missing directory', async () => {
    const dir = writeCifarDir();
    const path = join(dir, 'test_batch.bin');
    rmSync(path);
    await assertInputError(loadCifar10(dir), path, 'not found');
    const missingDir = join(tempRoot, 'no-such-cifar');
    await assertInputError(loadCifar10(missingDir), missingDir, 'directory not found');
  });
});

describe('dataset helpers', () => {
  const ds: ImageDataset = {
    name: 'toy',
    count: 4,
    height: 1,
    width: 2,
    channels: 1,
    numClasses: 3,
    images: Float32Array.from([0, 1, 10, 11, 20, 21, 30, 31]),
    labels: Uint8Array.from([0, 1, 2, 0]),
  };

  it('subset keeps the first samples', () => {
    const first = subset(ds, 2);
    assert.equal(first.count, 2);
    assert.deepEqual(Array.from(first.images), [0, 1, 10, 11]);
    assert.deepEqual(Array.from(first.labels), [0, 1]);
    assert.equal(first.height, 1);
    assert.equal(first.numClasses, 3);
    assert.equal(subset(ds, 4).count, 4);
  });

  it('subset rejects sizes out of range', async () => {
    await assertInputError(() => subset(ds, 5), 'toy', 'expected an integer from 1 to 4', 'found 5');
    await assertInputError(() => subset(ds, 0), 'found 0');
    await assertInputError(() => subset(ds, 1.5), 'found 1.5');
  });

  it('gatherBatch copies rows in index order', () => {
    const batch = gatherBatch(ds, [3, 0, 3]);
    assert.deepEqual(Array.from(batch.images), [30, 31, 0, 1, 30, 31]);
    assert.deepEqual(Array.from(batch.labels), [0, 0, 0]);
    batch.images[0] = -1;
    assert.equal(ds.images[6], 30, 'source untouched');
    assert.throws(() => gatherBatch(ds, [4]), RangeError);
  });
});

describe('augmentCifarBatch', () => {
  /** One image whose value at (y, x, c) is 1 + y*1000 + x*10 + c, so every pixel is identifiable. */
  const image = new Float32Array(3072);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) for (let c = 0; c < 3; c++) image[(y * 32 + x) * 3 + c] = 1 + y * 1000 + x * 10 + c;
  const at = (img: Float32Array, y: number, x: number, c = 0) => img[(y * 32 + x) * 3 + c];

  /** An rng returning the given values in turn. */
  const scripted = (...values: number[]) => {
    let i = 0;
    return () => values[i++ % values.length]!;
  };
  /** rng value that selects offset k in [0, 8], i.e. shift k - 4. */
  const offset = (k: number) => (k + 0.5) / 9;

  it('is the identity for a centred crop without flip', () => {
    const out = augmentCifarBatch(image, 1, scripted(offset(4), offset(4), 0.9));
    assert.deepEqual(out, image);
    assert.notEqual(out, image);
  });

  it('flips horizontally', () => {
    const out = augmentCifarBatch(image, 1, scripted(offset(4), offset(4), 0.1));
    assert.equal(at(out, 3, 0, 2), at(image, 3, 31, 2));
    assert.equal(at(out, 7, 31), at(image, 7, 0));
  });

  it('crops with shifts and zero padding', () => {
    // Crop shifted down by 4 rows and left by 4 columns (offsets 8 and 0).
    const out = augmentCifarBatch(image, 1, scripted(offset(8), offset(0), 0.9));
    assert.equal(at(out, 0, 4, 1), at(image, 4, 0, 1));
    assert.equal(at(out, 27, 31), at(image, 31, 27));
    assert.equal(at(out, 10, 3), 0, 'left padding');
    assert.equal(at(out, 28, 10), 0, 'bottom padding');
    // Shift then flip: out(y, x) = in(y + dy, 31 - x + dx).
    const flipped = augmentCifarBatch(image, 1, scripted(offset(2), offset(6), 0.1));
    assert.equal(at(flipped, 5, 0), 0, 'right padding lands on the left after flip');
    assert.equal(at(flipped, 5, 2), at(image, 3, 31));
    assert.equal(at(flipped, 0, 10), 0, 'top padding');
  });

  it('is deterministic given the rng and augments each image independently', () => {
    const batch = new Float32Array(3 * 3072);
    for (let n = 0; n < 3; n++)
      batch.set(
        image.map((v) => v + n * 100_000),
        n * 3072,
      );
    const lcg = (seed: number) => () => {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const a = augmentCifarBatch(batch, 3, lcg(42));
    assert.deepEqual(a, augmentCifarBatch(batch, 3, lcg(42)));
    assert.notDeepEqual(a, augmentCifarBatch(batch, 3, lcg(7)));
    // Each output image only holds values from its own input image (or padding).
    for (let n = 0; n < 3; n++) {
      for (const v of a.subarray(n * 3072, (n + 1) * 3072)) assert.ok(v === 0 || Math.floor(v / 100_000) === n);
    }
    assert.throws(() => augmentCifarBatch(batch, 2, lcg(1)), RangeError);
  });
});
