import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../../engine/data/imagenet/catalog.js';
import { loadExampleType } from '../../engine/data/imagenet/example.js';
import { modelsExample } from '../../engine/data/imagenet/example-keys.js';
import { InputError } from '../../shared/errors.js';
import { jpeg, writeFile, writeTfrecordFile } from '../helpers/imagenet-data.js';

/**
 * The index is built once and cached: a second open uses the cache without listing or scanning (shown by
 * changing the data behind the index's back, with the modification times put back), and a real change to
 * the dataset (a time that moves) makes the next open index it again.
 */

let tempRoot: string;

/** A whole second in the past: a time that can be put back exactly (a file's own time has nanoseconds a Date cannot hold). */
const PAST = new Date('2024-01-01T00:00:00Z');

/** Runs `change` on `path` (whose time is PAST) and puts the time back, so that the dataset's fingerprint does not move. */
function behindTheIndexsBack(path: string, change: () => void): void {
  change();
  utimesSync(path, PAST, PAST);
}

describe('ImageNet index cache', () => {
  before(() => {
    tempRoot = mkdtempSync(join(tmpdir(), 'autoprune-imagenet-cache-'));
  });
  after(() => rmSync(tempRoot, { recursive: true, force: true }));

  it('reuses the folder index on a second open and lists again once a class folder changes', async () => {
    const root = join(tempRoot, 'folders');
    const cacheDir = join(tempRoot, 'cache-folders');
    for (let i = 0; i < 3; i++) writeFile(join(root, 'train', 'n01440764', `n01440764_${i}.JPEG`), await jpeg(i));
    writeFile(join(root, 'val', 'n01440764', 'ILSVRC2012_val_00000001.JPEG'), await jpeg(9));

    const classDir = join(root, 'train', 'n01440764');
    utimesSync(classDir, PAST, PAST);
    const first = await openCatalog(root, { cacheDir, badSamples: 'fail' });
    assert.equal(first.train.count, 3);
    assert.deepEqual(readdirSync(cacheDir).length, 1);

    behindTheIndexsBack(classDir, () => unlinkSync(join(classDir, 'n01440764_1.JPEG')));
    const cached = await openCatalog(root, { cacheDir, badSamples: 'fail' });
    assert.equal(cached.train.count, 3, 'the cached index still lists the file removed behind its back');
    const [gone] = await cached.train.readEncoded([1]);
    assert.deepEqual(gone, { index: 1, bad: { file: join(classDir, 'n01440764_1.JPEG'), reason: 'cannot read the file (ENOENT)' } });

    writeFile(join(classDir, 'n01440764_7.JPEG'), await jpeg(7));
    const relisted = await openCatalog(root, { cacheDir, badSamples: 'fail' });
    assert.deepEqual(
      Array.from({ length: relisted.train.count }, (_, i) => relisted.train.describe(i)),
      ['n01440764_0.JPEG', 'n01440764_2.JPEG', 'n01440764_7.JPEG'].map((name) => join(classDir, name)),
    );
  });

  it("reuses the record index, so that a record damaged behind its back is caught when read, and scans again once a shard's time moves", async () => {
    const root = join(tempRoot, 'records');
    const cacheDir = join(tempRoot, 'cache-records');
    mkdirSync(root);
    const type = loadExampleType();
    const shard = join(root, 'train-00000-of-00001');
    const offsets = writeTfrecordFile(shard, [
      modelsExample(type, await jpeg(1), 0, 'n01440764', 'n01440764_1.JPEG'),
      modelsExample(type, await jpeg(2), 0, 'n01440764', 'n01440764_2.JPEG'),
    ]);
    writeTfrecordFile(join(root, 'validation-00000-of-00001'), [modelsExample(type, await jpeg(3), 0, 'n01440764', 'ILSVRC2012_val_00000001.JPEG')]);
    utimesSync(shard, PAST, PAST);
    await openCatalog(root, { cacheDir, badSamples: 'fail' });

    behindTheIndexsBack(shard, () => {
      const bytes = readFileSync(shard);
      bytes[offsets[1]! + 40]! ^= 0x01;
      writeFileSync(shard, bytes);
    });
    const cached = await openCatalog(root, { cacheDir, badSamples: 'fail' });
    assert.equal(cached.train.count, 2);
    assert.deepEqual(await cached.train.readEncoded([1]), [
      { index: 1, bad: { file: shard, offset: offsets[1], reason: "CRC-32C mismatch in the record's data" } },
    ]);

    utimesSync(shard, new Date(), new Date());
    await assert.rejects(
      openCatalog(root, { cacheDir, badSamples: 'fail' }),
      (error: unknown) => error instanceof InputError && error.message.includes(`${shard}@${offsets[1]}`),
    );
  });

  it('indexes again when the cache file is damaged', async () => {
    const root = join(tempRoot, 'damaged');
    const cacheDir = join(tempRoot, 'cache-damaged');
    writeFile(join(root, 'train', 'n01440764', 'a.JPEG'), await jpeg(1));
    writeFile(join(root, 'val', 'n01440764', 'b.JPEG'), await jpeg(2));
    await openCatalog(root, { cacheDir, badSamples: 'fail' });
    const [cacheFile] = readdirSync(cacheDir);
    writeFileSync(join(cacheDir, cacheFile!), 'not gzip');
    const reopened = await openCatalog(root, { cacheDir, badSamples: 'fail' });
    assert.equal(reopened.train.count, 1);
    assert.ok(
      readFileSync(join(cacheDir, cacheFile!))
        .subarray(0, 2)
        .equals(Buffer.from([0x1f, 0x8b])),
      'the cache was written again',
    );
  });
});
