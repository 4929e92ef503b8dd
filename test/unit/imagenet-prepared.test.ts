import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { dataPrepare, type SourceOpener } from '../../cli/prepare.js';
import { type CatalogSplit, openCatalog } from '../../engine/data/imagenet/catalog.js';
import { decodeImage } from '../../engine/data/imagenet/decode.js';
import { photoLikeJpeg } from '../../engine/data/imagenet/photo-like.js';
import { openPrepared, PREPARED_FOLDER, PREPARED_INDEX, type PreparedBadSample } from '../../engine/data/imagenet/prepared.js';
import { type PrepareOptions, type PrepareSource, type PrepareSourceSplit, packMembers, writePrepared } from '../../engine/data/imagenet/prepared-writer.js';
import { isRawImage, rawImageSize, rawPixels } from '../../engine/data/imagenet/raw-image.js';
import { InputError } from '../../shared/errors.js';
import { flatJpeg, imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * The prepared cache written from a dataset held in memory and read back: every good sample once, with its
 * label, as a JPEG of bounded size; packs a multiple of the ranks with equal counts; bad samples skipped and
 * listed or refused by name; a changed or cut pack found by its CRC and length, with file and offset.
 */

interface Sample {
  readonly name: string;
  readonly bytes: Buffer;
  readonly label: number;
}

/** A dataset split held in memory, read as the catalog reads one. */
class MemorySplit implements PrepareSourceSplit {
  constructor(private readonly samples: readonly Sample[]) {}
  get count(): number {
    return this.samples.length;
  }
  labelOf(index: number): number {
    return this.samples[index]!.label;
  }
  describe(index: number): string {
    return this.samples[index]!.name;
  }
  async readEncoded(indices: readonly number[]) {
    return indices.map((index) => ({ index, bytes: this.samples[index]!.bytes }));
  }
}

const CLASSES = ['n01000001', 'n01000002', 'n01000003'];
/** Each sample's flat colour names it: red is its label, green its number. */
const colourOf = (label: number, sample: number) => ({ r: 40 + label * 80, g: 20 + sample * 6, b: 128 });
const SIZES = [
  [600, 400],
  [120, 90],
  [257, 300],
  [256, 256],
  [1000, 260],
] as const;

async function makeSamples(split: string, count: number): Promise<Sample[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const label = i % CLASSES.length;
      const [width, height] = SIZES[i % SIZES.length]!;
      return { name: `${split}/${CLASSES[label]}/${i}.JPEG`, bytes: await flatJpeg(colourOf(label, i), width, height), label };
    }),
  );
}

const OPTIONS: PrepareOptions = { shortSide: 256, quality: 90, encoding: 'jpeg', ranks: 2, samplesPerPack: 7, seed: 0, parallel: 4, badSamples: 'skip' };

/** The sample number a decoded flat colour names. */
async function sampleOf(bytes: Buffer): Promise<{ label: number; sample: number; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
  const middle = (Math.floor(info.height / 2) * info.width + Math.floor(info.width / 2)) * info.channels;
  return {
    // max(0, …) turns the -0 that rounding a small negative gives into 0.
    label: Math.max(0, Math.round((data[middle]! - 40) / 80)),
    sample: Math.max(0, Math.round((data[middle + 1]! - 20) / 6)),
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
}

/** A stream that drops what is written to it. */
function quietStream(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

describe('prepared cache', () => {
  let root: string;
  let train: Sample[];
  let val: Sample[];

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'autoprune-prepared-'));
    train = await makeSamples('train', 30);
    val = await makeSamples('val', 9);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const source = (extraTrain: Sample[] = []): PrepareSource => ({
    classes: CLASSES,
    train: new MemorySplit([...train, ...extraTrain]),
    val: new MemorySplit(val),
  });

  it('holds every sample once with its label, its shorter side at most shortSide', async () => {
    const out = join(root, 'round-trip');
    await writePrepared(source(), out, OPTIONS);
    const prepared = await openPrepared(out);
    assert.deepEqual(prepared.classes, CLASSES);
    // The catalog serves a prepared split as any other: this only compiles while the shapes agree.
    const asCatalogSplit: CatalogSplit = prepared.train;
    assert.equal(asCatalogSplit.count, train.length);
    for (const [name, split, samples] of [
      ['train', prepared.train, train],
      ['val', prepared.val, val],
    ] as const) {
      assert.equal(split.count, samples.length, name);
      const indices = Array.from({ length: split.count }, (_, i) => split.count - 1 - i);
      const read = await split.readEncoded(indices);
      const seen = new Set<number>();
      for (const [slot, record] of read.entries()) {
        assert.equal(record.index, indices[slot], 'results come in the order asked');
        assert.ok('bytes' in record, `${name} ${record.index}: ${JSON.stringify(record)}`);
        const found = await sampleOf(record.bytes);
        assert.equal(found.label, split.labelOf(record.index), `${name} ${record.index}: the label travels with the image`);
        assert.equal(found.label, samples[found.sample]!.label);
        seen.add(found.sample);
        const [width, height] = SIZES[found.sample % SIZES.length]!;
        const short = Math.min(width, height);
        const expected =
          short <= 256 ? [width, height] : width <= height ? [256, Math.floor((256 * height) / width)] : [Math.floor((256 * width) / height), 256];
        assert.deepEqual([found.width, found.height], expected, `sample ${found.sample} of ${width}x${height}`);
        assert.match(split.describe(record.index), new RegExp(`${PREPARED_FOLDER}/pack-\\d{5}\\.bin@\\d+$`));
      }
      assert.equal(seen.size, samples.length, `${name}: every sample once`);
    }
  });

  it('makes a multiple of the ranks of packs with equal counts, each mixing the classes', async () => {
    const out = join(root, 'ranks');
    await writePrepared(source(), out, { ...OPTIONS, ranks: 3, samplesPerPack: 4 });
    const prepared = await openPrepared(out);
    const shards = prepared.train.shards;
    assert.equal(shards.length % 3, 0);
    assert.ok(Math.max(...shards.map((s) => s.count)) - Math.min(...shards.map((s) => s.count)) <= 1);
    let next = 0;
    let mixed = 0;
    for (const shard of shards) {
      assert.equal(shard.first, next, 'shards cover the indices in order');
      next += shard.count;
      if (new Set(Array.from({ length: shard.count }, (_, i) => prepared.train.labelOf(shard.first + i))).size > 1) mixed++;
    }
    assert.equal(next, train.length);
    // In source order (class after class) nearly every pack would hold one class.
    assert.ok(mixed >= shards.length - 1, `${mixed} of ${shards.length} packs mix classes`);
    assert.deepEqual(
      packMembers(
        Uint32Array.from({ length: 10 }, (_, i) => i),
        4,
        100,
      ).map((pack) => pack.length),
      [2, 3, 2, 3],
    );
  });

  it('turns the real set`s CMYK, greyscale and PNG files into ordinary RGB JPEGs that decode', async function () {
    const fixture = imagenetMiniFixture();
    if (!fixture) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    const files = ['n01810111/n01810111_0.JPEG', 'n01810111/n01810111_3.JPEG', 'n02215279/n02215279_6.JPEG'];
    const odd = files.map((file, i) => ({ name: file, bytes: readFileSync(join(fixture, 'folder', 'train', file)), label: i }));
    const out = join(root, 'odd');
    await writePrepared({ classes: CLASSES, train: new MemorySplit(odd), val: new MemorySplit(odd) }, out, { ...OPTIONS, ranks: 1 });
    const prepared = await openPrepared(out);
    const read = await prepared.train.readEncoded([0, 1, 2]);
    for (const record of read) {
      assert.ok('bytes' in record);
      const meta = await sharp(record.bytes).metadata();
      assert.equal(meta.format, 'jpeg');
      assert.equal(meta.channels, 3);
      assert.equal((await decodeImage(record.bytes, { kind: 'eval', size: 224 })).length, 224 * 224 * 3);
    }
  });

  it('skips a sample that does not decode and lists it, or refuses it by name', async () => {
    const broken: Sample = { name: 'train/n01000002/broken.JPEG', bytes: Buffer.from('no image here'), label: 1 };
    const out = join(root, 'bad');
    const index = await writePrepared(source([broken]), out, OPTIONS);
    assert.equal(index.splits.train.bad.length, 1);
    const bad: PreparedBadSample = index.splits.train.bad[0]!;
    assert.equal(bad.file, broken.name);
    assert.match(bad.reason, /does not decode/);
    assert.equal((await openPrepared(out)).train.count, train.length);
    await assert.rejects(writePrepared(source([broken]), join(root, 'bad-fail'), { ...OPTIONS, badSamples: 'fail' }), (error: unknown) => {
      return error instanceof InputError && error.message.includes(broken.name) && error.message.includes('does not decode');
    });
  });

  it('finds a changed record by its CRC and a cut pack by its length, naming file and offset', async () => {
    const out = join(root, 'damaged');
    await writePrepared(source(), out, OPTIONS);
    const prepared = await openPrepared(out);
    const shard = prepared.train.shards[0]!;
    const [, offset] = prepared.train.describe(shard.first + 1).split('@');
    const pack = readFileSync(shard.file);
    pack[Number(offset) + 100] = pack[Number(offset) + 100]! ^ 0xff;
    writeFileSync(shard.file, pack);
    const [changed] = await prepared.train.readEncoded([shard.first + 1]);
    assert.ok(changed && 'bad' in changed);
    assert.equal(changed.bad.file, shard.file);
    assert.equal(changed.bad.offset, Number(offset));
    assert.match(changed.bad.reason, /CRC-32C mismatch/);
    truncateSync(shard.file, pack.length - 10);
    const [cut] = await prepared.train.readEncoded([shard.first + shard.count - 1]);
    assert.ok(cut && 'bad' in cut);
    assert.match(cut.bad.reason, /truncated/);
    const [intact] = await prepared.train.readEncoded([shard.first]);
    assert.ok(intact && 'bytes' in intact);
  });

  it('refuses an index that is not a prepared cache, naming it', async () => {
    const out = join(root, 'not-prepared');
    await writePrepared(source(), out, OPTIONS);
    const indexPath = join(out, PREPARED_FOLDER, PREPARED_INDEX);
    writeFileSync(indexPath, JSON.stringify({ format: 'something-else', version: 1 }));
    await assert.rejects(openPrepared(out), (error: unknown) => error instanceof InputError && error.message.includes(indexPath));
    await assert.rejects(openPrepared(join(root, 'nowhere')), InputError);
  });
});

describe('autoprune data prepare', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'autoprune-prepare-cli-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const quiet = quietStream();

  it('writes the cache with the options given and reports what it wrote', async () => {
    const samples = await makeSamples('train', 12);
    const opened: Array<{ dir: string; badSamples: string }> = [];
    const opener = async (dir: string, options: { badSamples: 'fail' | 'skip' }) => {
      opened.push({ dir, badSamples: options.badSamples });
      return { classes: CLASSES, train: new MemorySplit(samples), val: new MemorySplit(samples.slice(0, 3)) };
    };
    let report = '';
    const stderr = new Writable({
      write: (chunk, _encoding, done) => {
        report += String(chunk);
        done();
      },
    });
    const out = join(root, 'out');
    const status = await dataPrepare(['/data/imagenet', '--out', out, '--short-side', '128', '--ranks', '2', '--bad-samples', 'skip'], opener, stderr);
    assert.equal(status, 0);
    assert.deepEqual(opened, [{ dir: '/data/imagenet', badSamples: 'skip' }]);
    const prepared = await openPrepared(out);
    assert.equal(prepared.index.shortSide, 128);
    assert.equal(prepared.index.ranks, 2);
    assert.equal(prepared.train.shards.length % 2, 0);
    assert.equal(prepared.train.count, 12);
    assert.match(report, /wrote 12 training and 3 validation images in \d+ packs/);
  });

  it('refuses missing or malformed options by name', async () => {
    const never = async (): Promise<PrepareSource> => assert.fail('the dataset is not opened when the options are wrong');
    await assert.rejects(dataPrepare(['/data'], never, quiet), (error: unknown) => error instanceof InputError && error.message.includes('--out'));
    await assert.rejects(dataPrepare([], never, quiet), InputError);
    await assert.rejects(
      dataPrepare(['/data', '--out', root, '--ranks', '0'], never, quiet),
      (error: unknown) => error instanceof InputError && error.message.includes('--ranks'),
    );
    await assert.rejects(
      dataPrepare(['/data', '--out', root, '--short-side', 'big'], never, quiet),
      (error: unknown) => error instanceof InputError && error.message.includes('--short-side'),
    );
    await assert.rejects(
      dataPrepare(['/data', '--out', root, '--bad-samples', 'ignore'], never, quiet),
      (error: unknown) => error instanceof InputError && error.message.includes('--bad-samples'),
    );
  });
});

describe('prepared cache of raw records', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'autoprune-prepared-raw-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('stores pixels that decode as the same image stored losslessly does', async () => {
    const photos = await Promise.all([photoLikeJpeg(1, 500, 375), photoLikeJpeg(2, 120, 90), photoLikeJpeg(3, 300, 420)]);
    const samples = photos.map((bytes, i) => ({ name: `photo-${i}.JPEG`, bytes, label: i }));
    const out = join(root, 'raw');
    const index = await writePrepared({ classes: CLASSES, train: new MemorySplit(samples), val: new MemorySplit(samples) }, out, {
      ...OPTIONS,
      encoding: 'raw',
      ranks: 1,
    });
    assert.equal(index.encoding, 'raw');
    const prepared = await openPrepared(out);
    const read = await prepared.train.readEncoded([0, 1, 2]);
    for (const record of read) {
      assert.ok('bytes' in record && isRawImage(record.bytes));
      const size = rawImageSize(record.bytes)!;
      assert.ok(Math.min(size.width, size.height) <= 256);
      const png = await sharp(rawPixels(record.bytes), { raw: { width: size.width, height: size.height, channels: 3 } })
        .png()
        .toBuffer();
      for (let sample = 0; sample < 6; sample++) {
        const transform = sample === 0 ? ({ kind: 'eval', size: 224 } as const) : ({ kind: 'train', size: 224, seed: 5, epoch: 0, sample } as const);
        const fromRaw = await decodeImage(record.bytes, transform);
        const fromPng = await decodeImage(png, transform);
        // Exact where both resample with Pillow's filter; libvips shrinks the PNG to within a few levels.
        let total = 0;
        for (let i = 0; i < fromRaw.length; i++) total += Math.abs(fromRaw[i]! - fromPng[i]!);
        assert.ok(total / fromRaw.length < 0.5, `record ${record.index}, sample ${sample}: mean difference ${total / fromRaw.length}`);
      }
    }
    await assert.rejects(
      decodeImage(read[0] && 'bytes' in read[0] ? read[0].bytes.subarray(0, 1000) : Buffer.alloc(0), { kind: 'eval', size: 224 }),
      /raw image record/,
    );
  });
});

describe('prepared cache of the shared fixture through the catalog', () => {
  let root: string;
  let fixture: string;
  before(function () {
    const found = imagenetMiniFixture();
    if (!found) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    fixture = found;
    root = mkdtempSync(join(tmpdir(), 'autoprune-prepared-fixture-'));
  });
  after(() => root && rmSync(root, { recursive: true, force: true }));

  for (const layout of ['folder', 'tfrecord']) {
    it(`keeps every image of the ${layout} layout with its class, per class as truth.json says`, async () => {
      const truth = JSON.parse(readFileSync(join(fixture, 'truth.json'), 'utf8')) as {
        classes: string[];
        train: Record<string, number>;
        val: Record<string, number>;
      };
      const out = join(root, layout);
      const opener: SourceOpener = openCatalog;
      assert.equal(await dataPrepare([join(fixture, layout), '--out', out, '--cache-dir', join(root, 'index-cache')], opener, quietStream()), 0);
      const prepared = await openPrepared(out);
      assert.deepEqual(prepared.classes, truth.classes);
      for (const name of ['train', 'val'] as const) {
        const split = prepared[name];
        const perClass: Record<string, number> = {};
        for (let i = 0; i < split.count; i++) perClass[truth.classes[split.labelOf(i)]!] = (perClass[truth.classes[split.labelOf(i)]!] ?? 0) + 1;
        assert.deepEqual(perClass, truth[name], name);
        const read = await split.readEncoded(Array.from({ length: split.count }, (_, i) => i));
        for (const record of read) {
          assert.ok('bytes' in record, JSON.stringify(record));
          assert.equal((await decodeImage(record.bytes, { kind: 'train', size: 64, seed: 1, epoch: 0, sample: record.index })).length, 64 * 64 * 3);
        }
      }
    });
  }
});
