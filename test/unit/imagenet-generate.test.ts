import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { dataGenerate } from '../../cli/generate.js';
import { type CatalogSplit, openCatalog } from '../../engine/data/imagenet/catalog.js';
import { type GenerateOptions, generatedWnid, generateImageNet, plannedImages, shardRanges } from '../../engine/data/imagenet/generate.js';
import { InputError } from '../../shared/errors.js';

/**
 * `autoprune data generate`'s datasets: what the catalog reads back from each format (layout, classes,
 * counts, labels, the same images in both), classes told apart by their colours, and the refusals.
 */

const OPTIONS: GenerateOptions = { classes: 3, perClass: 4, valPerClass: 2, size: 16, format: 'folders', seed: 7, shards: 3 };
const WORK = { parallel: 4 };

/** Every sample of a split as (label, image bytes), in a canonical order. */
async function samples(split: CatalogSplit): Promise<Array<[number, string]>> {
  const indices = Array.from({ length: split.count }, (_, i) => i);
  const encoded = await split.readEncoded(indices);
  return encoded
    .map((sample): [number, string] => {
      assert.ok('bytes' in sample, `sample ${sample.index} reads`);
      return [split.labelOf(sample.index), sample.bytes.toString('base64')];
    })
    .sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

describe('generated ImageNet-like datasets', function () {
  this.timeout(120_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-generate-'));
  const cacheDir = join(root, 'cache');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('plans the classes in turn, named as ImageNet names its files, and cuts shards of equal size', () => {
    const { train, val } = plannedImages(OPTIONS);
    assert.deepEqual(
      train.slice(0, 4).map((image) => [image.label, image.index, image.name]),
      [
        [0, 0, 'n01000000_0.JPEG'],
        [1, 0, 'n01001111_0.JPEG'],
        [2, 0, 'n01002222_0.JPEG'],
        [0, 1, 'n01000000_1.JPEG'],
      ],
    );
    assert.deepEqual(
      val.map((image) => image.name),
      Array.from({ length: 6 }, (_, k) => `ILSVRC2012_val_0000000${k + 1}.JPEG`),
    );
    assert.deepEqual(shardRanges(10, 3), [
      [0, 3],
      [3, 6],
      [6, 10],
    ]);
    assert.deepEqual(
      Array.from({ length: 1000 }, (_, c) => generatedWnid(c)),
      Array.from({ length: 1000 }, (_, c) => generatedWnid(c)).sort(),
      'sorted WordNet IDs keep the classes in order',
    );
  });

  it('writes image folders and TFRecord shards that the catalog reads, with the same labelled images in both', async () => {
    const folders = join(root, 'folders');
    const shards = join(root, 'shards');
    await generateImageNet(folders, OPTIONS, WORK);
    const summary = await generateImageNet(shards, { ...OPTIONS, format: 'tfrecord' }, WORK);
    assert.deepEqual(summary.files, 4);
    assert.deepEqual(readdirSync(shards).sort(), ['train-00000-of-00003', 'train-00001-of-00003', 'train-00002-of-00003', 'validation-00000-of-00001']);
    const fromFolders = await openCatalog(folders, { cacheDir, badSamples: 'fail' });
    const fromShards = await openCatalog(shards, { cacheDir, badSamples: 'fail' });
    assert.equal(fromFolders.layout, 'folders');
    assert.equal(fromShards.layout, 'tfrecord-models');
    for (const catalog of [fromFolders, fromShards]) {
      assert.deepEqual(catalog.classes, ['n01000000', 'n01001111', 'n01002222']);
      assert.deepEqual([catalog.train.count, catalog.val.count], [12, 6]);
      assert.deepEqual([catalog.train.bad, catalog.val.bad], [[], []]);
    }
    assert.deepEqual(
      fromShards.train.shards.map((s) => s.count),
      [4, 4, 4],
    );
    assert.deepEqual(await samples(fromShards.train), await samples(fromFolders.train));
    assert.deepEqual(await samples(fromShards.val), await samples(fromFolders.val));
  });

  it('draws the same images from the same seed, other images from another', async () => {
    const again = join(root, 'again');
    const other = join(root, 'other');
    await generateImageNet(again, OPTIONS, WORK);
    await generateImageNet(other, { ...OPTIONS, seed: 8 }, WORK);
    const file = join('train', 'n01001111', 'n01001111_2.JPEG');
    assert.deepEqual(readFileSync(join(again, file)), readFileSync(join(root, 'folders', file)));
    assert.notDeepEqual(readFileSync(join(other, file)), readFileSync(join(again, file)));
  });

  it('gives each class colours of its own: the nearest class mean colour names most validation images', async () => {
    const dir = join(root, 'colours');
    await generateImageNet(dir, { ...OPTIONS, classes: 4, perClass: 6, valPerClass: 3, size: 32 }, WORK);
    const catalog = await openCatalog(dir, { cacheDir, badSamples: 'fail' });
    const meanColour = async (bytes: Buffer) => (await sharp(bytes).stats()).channels.slice(0, 3).map((c) => c.mean);
    const colours = async (split: CatalogSplit) =>
      Promise.all(
        (await split.readEncoded(Array.from({ length: split.count }, (_, i) => i))).map(async (sample) => {
          assert.ok('bytes' in sample);
          return { label: split.labelOf(sample.index), colour: await meanColour(sample.bytes) };
        }),
      );
    const train = await colours(catalog.train);
    const centroids = [0, 1, 2, 3].map((label) => {
      const own = train.filter((t) => t.label === label);
      return [0, 1, 2].map((ch) => own.reduce((sum, t) => sum + t.colour[ch]!, 0) / own.length);
    });
    const distance = (a: number[], b: number[]) => a.reduce((sum, x, i) => sum + (x - b[i]!) ** 2, 0);
    const val = await colours(catalog.val);
    const right = val.filter(({ label, colour }) => {
      const nearest = centroids.map((c, i) => [distance(colour, c), i] as const).sort((a, b) => a[0] - b[0])[0]![1];
      return nearest === label;
    });
    // Chance is a quarter.
    assert.ok(right.length >= 9, `${right.length} of ${val.length} validation images nearest their own class's colour`);
  });

  it('refuses a folder that already holds files, and leaves nothing behind when it stops', async () => {
    const full = join(root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'notes.txt'), 'mine');
    await assert.rejects(generateImageNet(full, OPTIONS, WORK), (e: Error) => e instanceof InputError && e.message.startsWith(`${full}: already holds files`));
    assert.deepEqual(readdirSync(full), ['notes.txt']);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await generateImageNet(empty, OPTIONS, WORK);
    assert.deepEqual(readdirSync(empty).sort(), ['train', 'val']);
    await assert.rejects(
      generateImageNet(join(root, 'too-many-shards'), { ...OPTIONS, format: 'tfrecord', shards: 13 }, WORK),
      /--shards: must be from 1 to the 12/,
    );
    assert.ok(!existsSync(join(root, 'too-many-shards')));
    assert.deepEqual(
      readdirSync(root).filter((name) => name.includes('.partial-')),
      [],
    );
  });

  it('autoprune data generate names the option at fault', async () => {
    const dir = join(root, 'cli');
    const refusal = (args: string[], pattern: RegExp) =>
      assert.rejects(dataGenerate([dir, ...args]), (e: Error) => e instanceof InputError && pattern.test(e.message));
    await refusal(['--per-class', '4'], /needs --classes N/);
    await refusal(['--classes', '1', '--per-class', '4'], /^--classes: must be a whole number from 2 to 1000; found "1"/);
    await refusal(['--classes', '3', '--per-class', 'many'], /^--per-class: must be a whole number from 1/);
    await refusal(['--classes', '3', '--per-class', '4', '--format', 'png'], /^--format: must be folders or tfrecord/);
    await refusal(['--classes', '3', '--per-class', '4', '--shards', '2'], /^--shards: applies to --format tfrecord only/);
    await refusal(['--classes', '3', '--per-class', '4', '--size', '4'], /^--size: must be a whole number from 8 to 4096/);
    assert.ok(!existsSync(dir));
  });
});
