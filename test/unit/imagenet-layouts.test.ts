import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type protobuf from 'protobufjs';
import { type CatalogSplit, type ImageNetCatalog, openCatalog } from '../../engine/data/imagenet/catalog.js';
import { loadExampleType } from '../../engine/data/imagenet/example.js';
import { modelsExample } from '../../engine/data/imagenet/example-keys.js';
import { InputError } from '../../shared/errors.js';
import { jpeg, tfdsExample, writeFile, writeTfrecordFile } from '../helpers/imagenet-data.js';

/**
 * Generated datasets for what the shared fixture lacks: synset-folder and devkit-labelled validation sets,
 * Kaggle's folder tree, TFDS keys, GZIP shards, and injected corruptions, each of which must come back as a
 * bad sample naming its file (and offset), never as a sample with a guessed label.
 */

let tempRoot: string;
let counter = 0;
function freshDir(name: string): string {
  const dir = join(tempRoot, `${counter++}-${name}`);
  mkdirSync(dir);
  return dir;
}

/** [file name, class WordNet ID] of every sample, in index order. */
function labelled(catalog: ImageNetCatalog, split: CatalogSplit): Array<[string, string]> {
  return Array.from({ length: split.count }, (_, i) => [basename(split.describe(i)), catalog.classes[split.labelOf(i)]!]);
}

/** Bad samples as [file name, offset, reason], for comparing without the temporary paths. */
function badOf(split: CatalogSplit): Array<[string, number | undefined, string]> {
  return split.bad.map((bad) => [basename(bad.file), bad.offset, bad.reason]);
}

async function rejects(promise: Promise<unknown>, ...fragments: string[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof InputError, `expected an InputError, got ${String(error)}`);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `${JSON.stringify(error.message)} lacks ${JSON.stringify(fragment)}`);
    return true;
  });
}

describe('ImageNet layouts', () => {
  before(() => {
    tempRoot = mkdtempSync(join(tmpdir(), 'autoprune-imagenet-layouts-'));
  });
  after(() => rmSync(tempRoot, { recursive: true, force: true }));

  describe('ImageNet folders', () => {
    it('labels synset-folder validation images by folder; other folders and files are bad or ignored, never guessed', async () => {
      const root = freshDir('synset-val');
      for (const [i, wnid] of ['n01440764', 'n01443537'].entries()) {
        writeFile(join(root, 'train', wnid, `${wnid}_1.JPEG`), await jpeg(i));
        writeFile(join(root, 'train', wnid, `${wnid}_2.jpeg`), await jpeg(i + 10));
        writeFile(join(root, 'val', wnid, `ILSVRC2012_val_0000000${i + 1}.JPEG`), await jpeg(i + 20));
      }
      writeFile(join(root, 'train', 'n01440764', 'README.txt'), 'not an image');
      writeFile(join(root, 'train', 'n01440764', '.DS_Store'), 'hidden');
      writeFile(join(root, 'train', 'extras', 'stray.JPEG'), await jpeg(30));
      writeFile(join(root, 'val', 'n09999999', 'ILSVRC2012_val_00000009.JPEG'), await jpeg(31));

      const catalog = await openCatalog(root, { badSamples: 'skip' });
      assert.deepEqual(catalog.classes, ['n01440764', 'n01443537']);
      assert.deepEqual(labelled(catalog, catalog.train), [
        ['n01440764_1.JPEG', 'n01440764'],
        ['n01440764_2.jpeg', 'n01440764'],
        ['n01443537_1.JPEG', 'n01443537'],
        ['n01443537_2.jpeg', 'n01443537'],
      ]);
      assert.deepEqual(labelled(catalog, catalog.val), [
        ['ILSVRC2012_val_00000001.JPEG', 'n01440764'],
        ['ILSVRC2012_val_00000002.JPEG', 'n01443537'],
      ]);
      assert.deepEqual(badOf(catalog.train), [['stray.JPEG', undefined, 'folder extras is not a WordNet ID (nXXXXXXXX), so its images have no class']]);
      assert.deepEqual(badOf(catalog.val), [['ILSVRC2012_val_00000009.JPEG', undefined, 'unknown WordNet ID n09999999: not among the training classes']]);
      await rejects(openCatalog(root, { badSamples: 'fail' }), join(root, 'train', 'extras', 'stray.JPEG'), 'is not a WordNet ID', '2 bad samples in all');
    });

    it("labels a flat validation folder by the devkit's ground truth: ILSVRC2012 IDs in meta.mat order, mapped to sorted classes", async () => {
      const root = freshDir('devkit');
      // The devkit's first ground-truth IDs and, from tensorflow/models' list of validation WordNet IDs, what they name.
      const named = { 490: 'n01751748', 361: 'n09193705', 171: 'n02105855' };
      for (const [i, wnid] of Object.values(named).entries()) writeFile(join(root, 'train', wnid, `${wnid}_1.JPEG`), await jpeg(i));
      for (let n = 1; n <= 5; n++) writeFile(join(root, 'val', `ILSVRC2012_val_0000000${n}.JPEG`), await jpeg(n + 10));
      // Image 4's class (822: n04263257) is not among the training classes; image 5 has no line.
      writeFile(join(root, 'ILSVRC2012_devkit_t12', 'data', 'ILSVRC2012_validation_ground_truth.txt'), '490\n361\n171\n822\n');

      const catalog = await openCatalog(root, { badSamples: 'skip' });
      assert.deepEqual(catalog.classes, ['n01751748', 'n02105855', 'n09193705']);
      assert.deepEqual(
        Array.from({ length: catalog.val.count }, (_, i) => catalog.val.labelOf(i)),
        [0, 2, 1],
      );
      const groundTruth = join(root, 'ILSVRC2012_devkit_t12', 'data', 'ILSVRC2012_validation_ground_truth.txt');
      assert.deepEqual(badOf(catalog.val), [
        ['ILSVRC2012_val_00000004.JPEG', undefined, 'unknown WordNet ID n04263257: not among the training classes'],
        ['ILSVRC2012_val_00000005.JPEG', undefined, `no entry for image 5 in ${groundTruth} (it has 4 lines)`],
      ]);
    });

    it("finds Kaggle's tree (ILSVRC/Data/CLS-LOC with LOC_val_solution.csv beside it); an image without a CSV entry is bad", async () => {
      const root = freshDir('kaggle');
      const images = join(root, 'ILSVRC', 'Data', 'CLS-LOC');
      for (const [i, wnid] of ['n01440764', 'n01443537'].entries()) writeFile(join(images, 'train', wnid, `${wnid}_${i}.JPEG`), await jpeg(i));
      for (let n = 1; n <= 3; n++) writeFile(join(images, 'val', `ILSVRC2012_val_0000000${n}.JPEG`), await jpeg(n + 5));
      writeFile(
        join(root, 'LOC_val_solution.csv'),
        'ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 1 2 3 4 n01440764 5 6 7 8\nILSVRC2012_val_00000001,n01443537 9 9 9 9\n',
      );

      const catalog = await openCatalog(root, { badSamples: 'skip' });
      assert.deepEqual(labelled(catalog, catalog.val), [
        ['ILSVRC2012_val_00000001.JPEG', 'n01443537'],
        ['ILSVRC2012_val_00000002.JPEG', 'n01440764'],
      ]);
      assert.deepEqual(badOf(catalog.val), [
        ['ILSVRC2012_val_00000003.JPEG', undefined, `no entry for ILSVRC2012_val_00000003 in ${join(root, 'LOC_val_solution.csv')}`],
      ]);
      assert.equal(catalog.train.describe(0), join(images, 'train', 'n01440764', 'n01440764_0.JPEG'));
    });

    it('refuses what it cannot use as a whole, saying what it expected', async () => {
      await rejects(openCatalog(freshDir('empty'), { badSamples: 'fail' }), 'is not an ImageNet layout', 'an empty folder');
      const tars = freshDir('tars');
      writeFile(join(tars, 'train', 'n01440764.tar'), 'archive');
      await rejects(openCatalog(tars, { badSamples: 'fail' }), 'holds no class folders', '1 .tar archives: extract each into train/<wnid>/');
      const unlabelled = freshDir('unlabelled');
      writeFile(join(unlabelled, 'train', 'n01440764', 'a.JPEG'), await jpeg(1));
      writeFile(join(unlabelled, 'val', 'ILSVRC2012_val_00000001.JPEG'), await jpeg(2));
      await rejects(openCatalog(unlabelled, { badSamples: 'fail' }), 'holds 1 images but no labels for them', 'LOC_val_solution.csv');
      const noVal = freshDir('no-val');
      writeFile(join(noVal, 'train', 'n01440764', 'a.JPEG'), await jpeg(1));
      await rejects(openCatalog(noVal, { badSamples: 'fail' }), 'validation folder not found');
    });
  });

  describe('ImageNet TFRecords', () => {
    let type: protobuf.Type;
    before(() => {
      type = loadExampleType();
    });

    for (const gzip of [false, true]) {
      it(`reads TFDS imagenet2012 files: 0-based labels named by label.labels.txt (${gzip ? 'GZIP' : 'uncompressed'})`, async () => {
        const root = freshDir(`tfds-${gzip}`);
        const classes = ['n01440764', 'n01443537', 'n01484850'];
        writeFile(join(root, 'label.labels.txt'), `${classes.join('\n')}\n`);
        const shard = (split: string, n: number) => join(root, `imagenet2012-${split}.tfrecord-0000${n}-of-0000${split === 'train' ? 2 : 1}`);
        writeTfrecordFile(
          shard('train', 0),
          [tfdsExample(type, await jpeg(1), 2, 'n01484850_1.JPEG'), tfdsExample(type, await jpeg(2), 0, 'n01440764_7.JPEG')],
          {
            gzip,
          },
        );
        const offsets = writeTfrecordFile(
          shard('train', 1),
          [
            tfdsExample(type, await jpeg(3), 1, 'n01443537_3.JPEG'),
            tfdsExample(type, await jpeg(4), 1, 'n01440764_9.JPEG'),
            tfdsExample(type, await jpeg(5), 0, 'n01440764_2.JPEG'),
          ],
          { gzip },
        );
        const valOffsets = writeTfrecordFile(
          shard('validation', 0),
          [tfdsExample(type, await jpeg(6), 7, 'ILSVRC2012_val_00000001.JPEG'), tfdsExample(type, await jpeg(7), 2, 'ILSVRC2012_val_00000002.JPEG')],
          { gzip },
        );

        const catalog = await openCatalog(root, { badSamples: 'skip' });
        assert.equal(catalog.layout, 'tfrecord-tfds');
        assert.deepEqual(catalog.classes, classes);
        assert.deepEqual(
          Array.from({ length: catalog.train.count }, (_, i) => catalog.train.labelOf(i)),
          [2, 0, 1, 0],
        );
        assert.deepEqual(badOf(catalog.train), [
          [basename(shard('train', 1)), offsets[1], "label 1 (n01443537) disagrees with file_name's WordNet ID n01440764"],
        ]);
        assert.deepEqual(badOf(catalog.val), [[basename(shard('validation', 0)), valOffsets[0], 'label 7 names no class (3 labels known)']]);
        const samples = await catalog.train.readEncoded([3, 0, 2]);
        assert.deepEqual(
          samples.map((sample) => sample.index),
          [3, 0, 2],
        );
        const expected = [await jpeg(5), await jpeg(1), await jpeg(3)];
        samples.forEach((sample, i) => assert.ok('bytes' in sample && sample.bytes.equals(expected[i]!)));
        assert.equal(catalog.val.describe(0), `${shard('validation', 0)}@${valOffsets[1]}`);
      });
    }

    it("takes TFDS's classes from the training file names when label.labels.txt is absent", async () => {
      const root = freshDir('tfds-no-names');
      writeTfrecordFile(join(root, 'imagenet2012-train.tfrecord-00000-of-00001'), [
        tfdsExample(type, await jpeg(1), 1, 'n01443537_1.JPEG'),
        tfdsExample(type, await jpeg(2), 0, 'n01440764_1.JPEG'),
      ]);
      writeTfrecordFile(join(root, 'imagenet2012-validation.tfrecord-00000-of-00001'), [tfdsExample(type, await jpeg(3), 1, 'ILSVRC2012_val_00000001.JPEG')]);
      const catalog = await openCatalog(root, { badSamples: 'fail' });
      assert.deepEqual(catalog.classes, ['n01440764', 'n01443537']);
      assert.deepEqual([catalog.train.labelOf(0), catalog.train.labelOf(1), catalog.val.labelOf(0)], [1, 0, 1]);
    });

    it('reports each injected corruption of tensorflow/models shards with its file and offset', async () => {
      const root = freshDir('models-corrupt');
      const wnids = ['n01440764', 'n01443537'];
      const train0 = join(root, 'train-00000-of-00002');
      const train1 = join(root, 'train-00001-of-00002');
      const val0 = join(root, 'validation-00000-of-00001');
      const offsets0 = writeTfrecordFile(train0, [
        modelsExample(type, await jpeg(1), 0, wnids[0]!, 'n01440764_1.JPEG'),
        modelsExample(type, await jpeg(2), 1, wnids[1]!, 'n01443537_1.JPEG'),
        modelsExample(type, await jpeg(3), 0, wnids[0]!, 'n01440764_2.JPEG'),
      ]);
      const offsets1 = writeTfrecordFile(train1, [
        modelsExample(type, await jpeg(4), 1, wnids[1]!, 'n01443537_2.JPEG'),
        modelsExample(type, await jpeg(5), 1, wnids[0]!, 'n01440764_3.JPEG'),
        modelsExample(type, await jpeg(6), 0, wnids[0]!, 'n01440764_4.JPEG'),
      ]);
      const valOffsets = writeTfrecordFile(val0, [
        modelsExample(type, await jpeg(7), 0, wnids[0]!, 'ILSVRC2012_val_00000001.JPEG'),
        modelsExample(type, await jpeg(8), 4, 'n09999999', 'ILSVRC2012_val_00000002.JPEG'),
      ]);
      // A flipped byte in the data of train0's middle record; train1 cut inside its last record.
      const bytes0 = readFileSync(train0);
      bytes0[offsets0[1]! + 12 + 100]! ^= 0x10;
      writeFileSync(train0, bytes0);
      const bytes1 = readFileSync(train1);
      writeFileSync(train1, bytes1.subarray(0, bytes1.length - 10));

      const catalog = await openCatalog(root, { badSamples: 'skip' });
      assert.deepEqual(catalog.classes, wnids);
      assert.deepEqual(
        catalog.train.shards.map((shard) => [basename(shard.file), shard.first, shard.count]),
        [
          ['train-00000-of-00002', 0, 2],
          ['train-00001-of-00002', 2, 1],
        ],
      );
      assert.deepEqual(badOf(catalog.train), [
        ['train-00000-of-00002', offsets0[1], "CRC-32C mismatch in the record's data"],
        ['train-00001-of-00002', offsets1[1], 'image/class/label 2 disagrees with image/class/synset n01440764, labelled 1 in the training records'],
        ['train-00001-of-00002', offsets1[2], `truncated record: ${bytes1.length - 10 - offsets1[2]!} of ${bytes1.length - offsets1[2]!} bytes`],
      ]);
      assert.deepEqual(badOf(catalog.val), [['validation-00000-of-00001', valOffsets[1], 'unknown WordNet ID n09999999: not among the training classes']]);
      assert.deepEqual(
        Array.from({ length: catalog.train.count }, (_, i) => catalog.train.describe(i)),
        [`${train0}@${offsets0[0]}`, `${train0}@${offsets0[2]}`, `${train1}@${offsets1[0]}`],
      );
      await rejects(openCatalog(root, { badSamples: 'fail' }), `${train0}@${offsets0[1]}`, "CRC-32C mismatch in the record's data", '4 bad samples in all');
    });

    it('refuses missing shards, naming them, and a folder holding two layouts', async () => {
      const root = freshDir('missing');
      const record = modelsExample(type, await jpeg(1), 0, 'n01440764', 'n01440764_1.JPEG');
      writeTfrecordFile(join(root, 'train-00000-of-00003'), [record]);
      writeTfrecordFile(join(root, 'train-00002-of-00003'), [record]);
      writeTfrecordFile(join(root, 'validation-00000-of-00001'), [record]);
      await rejects(openCatalog(root, { badSamples: 'fail' }), 'train shards are missing', 'train-00001-of-00003');
      writeTfrecordFile(join(root, 'train-00001-of-00003'), [record]);
      writeFile(join(root, 'train', 'n01440764', 'a.JPEG'), await jpeg(1));
      await rejects(openCatalog(root, { badSamples: 'fail' }), 'holds both image folders and TFRecord shards');
    });
  });
});
