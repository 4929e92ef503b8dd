import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type CatalogSplit, type ImageNetCatalog, openCatalog } from '../../engine/data/imagenet/catalog.js';
import { decodeExample, loadExampleType } from '../../engine/data/imagenet/example.js';
import { writePrepared } from '../../engine/data/imagenet/prepared-writer.js';
import { scanRecords } from '../../engine/data/imagenet/tfrecord.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * The shared fixture (/work/shared/fixtures/imagenet-mini), written by TensorFlow and Pillow: the same five
 * classes as image folders (flat val/ with Kaggle's CSV) and as tensorflow/models TFRecord shards. Every
 * label is checked against truth.json and the CSV, found independently of the catalog.
 */

interface Truth {
  classes: string[];
  train: Record<string, number>;
  val: Record<string, number>;
  odd_files: Record<string, string>;
}

let FIXTURE: string;
let truth: Truth;
/** ImageId → WordNet ID, read from the CSV here rather than by the code under test. */
let valTruth: Map<string, string>;

function perClass(catalog: ImageNetCatalog, split: CatalogSplit): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < split.count; i++) {
    const wnid = catalog.classes[split.labelOf(i)]!;
    counts[wnid] = (counts[wnid] ?? 0) + 1;
  }
  return counts;
}

function allIndices(split: CatalogSplit): number[] {
  return Array.from({ length: split.count }, (_, i) => i);
}

describe('ImageNet fixture', () => {
  before(function () {
    const found = imagenetMiniFixture();
    if (!found) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    FIXTURE = found;
    truth = JSON.parse(readFileSync(`${FIXTURE}/truth.json`, 'utf8')) as Truth;
    valTruth = new Map(
      readFileSync(`${FIXTURE}/folder/LOC_val_solution.csv`, 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => [line.split(',')[0]!, line.split(',')[1]!.split(' ')[0]!] as const),
    );
  });

  describe('image folders', () => {
    let catalog: ImageNetCatalog;
    before(async () => {
      catalog = await openCatalog(`${FIXTURE}/folder`, { badSamples: 'fail' });
    });

    it('finds the sorted classes and the images per class of truth.json', () => {
      assert.equal(catalog.layout, 'folders');
      assert.deepEqual(catalog.classes, truth.classes);
      assert.deepEqual(perClass(catalog, catalog.train), truth.train);
      assert.deepEqual(perClass(catalog, catalog.val), truth.val);
      assert.deepEqual([...catalog.train.bad, ...catalog.val.bad], []);
      assert.deepEqual(catalog.train.shards, []);
    });

    it('labels each training image by its folder and each validation image by the CSV', () => {
      for (let i = 0; i < catalog.train.count; i++) assert.equal(catalog.classes[catalog.train.labelOf(i)], basename(dirname(catalog.train.describe(i))));
      for (let i = 0; i < catalog.val.count; i++) {
        const id = basename(catalog.val.describe(i)).replace(/\.JPEG$/, '');
        assert.equal(catalog.classes[catalog.val.labelOf(i)], valTruth.get(id), id);
      }
    });

    it("reads each sample's file, the odd ones (CMYK, grey, PNG named .JPEG) included, in the order asked", async () => {
      const indices = allIndices(catalog.train).reverse();
      const samples = await catalog.train.readEncoded(indices);
      assert.deepEqual(
        samples.map((sample) => sample.index),
        indices,
      );
      for (const sample of samples) {
        assert.ok('bytes' in sample, JSON.stringify(sample));
        assert.ok(sample.bytes.equals(readFileSync(catalog.train.describe(sample.index))));
      }
      const odd = Object.keys(truth.odd_files).map((file) => `${FIXTURE}/folder/${file}`);
      assert.deepEqual(
        odd.filter((file) => !indices.some((i) => catalog.train.describe(i) === file)),
        [],
      );
    });
  });

  describe('tensorflow/models TFRecord shards', () => {
    let catalog: ImageNetCatalog;
    /** file@offset → the record's image/filename, from a scan of our own. */
    const fileNames = new Map<string, string>();
    before(async () => {
      catalog = await openCatalog(`${FIXTURE}/tfrecord`, { badSamples: 'fail' });
      const type = loadExampleType();
      for (const shard of [...catalog.train.shards, ...catalog.val.shards]) {
        for await (const record of scanRecords(shard.file, false)) {
          assert.ok('data' in record);
          const name = decodeExample(type, record.data).get('image/filename')!;
          fileNames.set(`${shard.file}@${record.offset}`, (name.values[0] as Buffer).toString());
        }
      }
    });

    it('finds the classes, the shards with their index ranges, and the images per class of truth.json', () => {
      assert.equal(catalog.layout, 'tfrecord-models');
      assert.deepEqual(catalog.classes, truth.classes);
      assert.deepEqual(
        catalog.train.shards.map((shard) => [basename(shard.file), shard.first, shard.count]),
        [
          ['train-00000-of-00002', 0, 15],
          ['train-00001-of-00002', 15, 15],
        ],
      );
      assert.deepEqual(perClass(catalog, catalog.train), truth.train);
      assert.deepEqual(perClass(catalog, catalog.val), truth.val);
    });

    it("labels each record as its image's file name says (the folder for training, the CSV for validation)", () => {
      for (let i = 0; i < catalog.train.count; i++) {
        assert.equal(catalog.classes[catalog.train.labelOf(i)], fileNames.get(catalog.train.describe(i))!.split('_')[0]);
      }
      for (let i = 0; i < catalog.val.count; i++) {
        const id = fileNames.get(catalog.val.describe(i))!.replace(/\.JPEG$/, '');
        assert.equal(catalog.classes[catalog.val.labelOf(i)], valTruth.get(id), id);
      }
    });

    it("reads each record's image bytes: the folder's own file wherever the builder did not re-encode it", async () => {
      const samples = await catalog.val.readEncoded(allIndices(catalog.val));
      for (const sample of samples) {
        assert.ok('bytes' in sample);
        const name = fileNames.get(catalog.val.describe(sample.index))!;
        assert.ok(sample.bytes.equals(readFileSync(`${FIXTURE}/folder/val/${name}`)), name);
      }
      const train = await catalog.train.readEncoded([29, 0, 17, 3]);
      assert.deepEqual(
        train.map((sample) => ('bytes' in sample ? [sample.index, sample.bytes.subarray(0, 2).toString('hex')] : sample)),
        [
          [29, 'ffd8'],
          [0, 'ffd8'],
          [17, 'ffd8'],
          [3, 'ffd8'],
        ],
      );
    });
  });

  describe('the prepared cache as a layout', () => {
    let root: string;
    before(() => {
      root = mkdtempSync(join(tmpdir(), 'autoprune-prepared-layout-'));
    });
    after(() => rmSync(root, { recursive: true, force: true }));

    const options = { shortSide: 96, quality: 90, ranks: 2, samplesPerPack: 20_000, seed: 0, parallel: 4, badSamples: 'fail' } as const;

    for (const encoding of ['jpeg', 'raw'] as const) {
      it(`opens DIR/prepared/ (${encoding} records) with the fixture's classes and labels, its packs as shards`, async () => {
        const out = join(root, encoding);
        await writePrepared(await openCatalog(`${FIXTURE}/folder`, { badSamples: 'fail' }), out, { ...options, encoding });
        const catalog = await openCatalog(out, { badSamples: 'fail' });
        assert.equal(catalog.layout, 'prepared');
        assert.deepEqual(catalog.classes, truth.classes);
        assert.deepEqual(perClass(catalog, catalog.train), truth.train);
        assert.deepEqual(perClass(catalog, catalog.val), truth.val);
        assert.deepEqual(
          catalog.train.shards.map((shard) => [shard.first, shard.count]),
          [
            [0, 15],
            [15, 15],
          ],
        );
        const samples = await catalog.val.readEncoded(allIndices(catalog.val));
        assert.ok(samples.every((sample) => 'bytes' in sample && sample.bytes.length > 0));
        assert.equal((await openCatalog(join(out, 'prepared'), { badSamples: 'fail' })).layout, 'prepared', 'the prepared/ folder itself opens too');
      });
    }

    it('prefers a prepared cache written beside the images it was made from', async () => {
      const dataset = join(root, 'beside');
      cpSync(`${FIXTURE}/folder`, dataset, { recursive: true });
      await writePrepared(await openCatalog(dataset, { badSamples: 'fail' }), dataset, { ...options, encoding: 'jpeg' });
      const catalog = await openCatalog(dataset, { badSamples: 'fail' });
      assert.equal(catalog.layout, 'prepared');
      assert.equal(catalog.train.count, 30);
    });
  });
});
