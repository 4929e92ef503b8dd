import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckReport } from '../../cli/data-check.js';
import { loadExampleType } from '../../engine/data/imagenet/example.js';
import { modelsExample } from '../../engine/data/imagenet/example-keys.js';
import { runCli } from '../helpers/cli.js';
import { jpeg, writeFile, writeTfrecordFile } from '../helpers/imagenet-data.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * `autoprune data check` as a real process: the shared fixture comes out clean with its odd files named as
 * converted; injected corruptions come out as bad samples with their file (and offset) and exit status 1;
 * input it cannot use at all, with status 2.
 */

async function check(...args: string[]): Promise<{ status: number | null; report: CheckReport | undefined; stdout: string; stderr: string }> {
  const result = await runCli(['data', 'check', ...args]);
  const report = args.includes('--json') && result.status !== 2 ? (JSON.parse(result.stdout) as CheckReport) : undefined;
  return { status: result.status, report, stdout: result.stdout, stderr: result.stderr };
}

describe('autoprune data check', () => {
  let tempRoot: string;
  before(() => {
    tempRoot = mkdtempSync(join(tmpdir(), 'autoprune-data-check-'));
  });

  describe('on the shared fixture', () => {
    let FIXTURE: string;
    let truth: { classes: string[]; train: Record<string, number>; val: Record<string, number> };
    before(function () {
      const found = imagenetMiniFixture();
      if (!found) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
      FIXTURE = found;
      truth = JSON.parse(readFileSync(`${FIXTURE}/truth.json`, 'utf8')) as typeof truth;
    });

    after(() => rmSync(tempRoot, { recursive: true, force: true }));

    it('reads the fixture folders clean, with the CMYK, greyscale and PNG files named as converted to RGB', async () => {
      const { status, report } = await check(`${FIXTURE}/folder`, '--json');
      assert.equal(status, 0);
      assert.equal(report!.classes, truth.classes.length);
      assert.deepEqual(report!.splits, { train: { images: 30, perClass: truth.train }, val: { images: 10, perClass: truth.val } });
      assert.deepEqual(report!.bad, []);
      assert.deepEqual(report!.converted, [
        { file: `${FIXTURE}/folder/train/n01810111/n01810111_0.JPEG`, from: 'CMYK JPEG' },
        { file: `${FIXTURE}/folder/train/n01810111/n01810111_3.JPEG`, from: 'greyscale JPEG' },
        { file: `${FIXTURE}/folder/train/n02215279/n02215279_6.JPEG`, from: 'PNG' },
      ]);
    });

    it('prints the class count, images per split and per class for the fixture shards', async () => {
      const { status, stdout } = await check(`${FIXTURE}/tfrecord`);
      assert.equal(status, 0);
      assert.match(stdout, /tfrecord-models, 5 classes/);
      assert.match(stdout, /^train: 30 images$/m);
      assert.match(stdout, /^val: 10 images$/m);
      for (const wnid of truth.classes) assert.match(stdout, new RegExp(`^  ${wnid}  6$`, 'm'));
      assert.match(stdout, /^bad samples: 0$/m);
    });

    it('reads a prepared cache of raw records through the same decoder, as the prepared layout', async () => {
      const out = join(tempRoot, 'prepared-raw');
      const prepared = await runCli(['data', 'prepare', `${FIXTURE}/tfrecord`, '--out', out, '--encoding', 'raw', '--short-side', '96']);
      assert.equal(prepared.status, 0, prepared.stderr);
      const { status, report } = await check(out, '--json');
      assert.equal(status, 0);
      assert.equal(report!.layout, 'prepared');
      assert.deepEqual(report!.splits, { train: { images: 30, perClass: truth.train }, val: { images: 10, perClass: truth.val } });
      assert.deepEqual(report!.converted, []);
    });
  });

  it('names every corrupt file of a folder dataset with its reason, and exits 1', async () => {
    const root = join(tempRoot, 'folders');
    const good = await jpeg(1, 64, 48);
    for (const wnid of ['n01440764', 'n01443537']) for (let i = 0; i < 3; i++) writeFile(join(root, 'train', wnid, `${wnid}_${i}.JPEG`), await jpeg(i, 64, 48));
    writeFile(join(root, 'train', 'n01440764', 'n01440764_1.JPEG'), good.subarray(0, good.length >> 1));
    writeFile(join(root, 'train', 'n01443537', 'n01443537_2.JPEG'), 'this is no image');
    writeFile(join(root, 'train', 'n01443537', 'n01443537_0.JPEG'), '');
    for (let n = 1; n <= 3; n++) writeFile(join(root, 'val', `ILSVRC2012_val_0000000${n}.JPEG`), await jpeg(n + 10, 64, 48));
    writeFile(
      join(root, 'LOC_val_solution.csv'),
      'ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 1 2 2\nILSVRC2012_val_00000002,n09999999 1 1 2 2\n',
    );

    const { status, report, stderr } = await check(root, '--json');
    assert.equal(status, 1, stderr);
    assert.deepEqual(report!.splits.train, { images: 3, perClass: { n01440764: 2, n01443537: 1 } });
    assert.deepEqual(report!.splits.val, { images: 1, perClass: { n01440764: 1, n01443537: 0 } });
    const csv = join(root, 'LOC_val_solution.csv');
    assert.deepEqual(
      report!.bad.map((bad) => [bad.file.slice(root.length + 1), bad.reason]),
      [
        ['val/ILSVRC2012_val_00000002.JPEG', 'unknown WordNet ID n09999999: not among the training classes'],
        ['val/ILSVRC2012_val_00000003.JPEG', `no entry for ILSVRC2012_val_00000003 in ${csv}`],
        ['train/n01440764/n01440764_1.JPEG', 'does not decode: Input buffer has corrupt header: VipsJpeg: premature end of JPEG image'],
        ['train/n01443537/n01443537_0.JPEG', 'empty file'],
        ['train/n01443537/n01443537_2.JPEG', 'does not decode: Input buffer contains unsupported image format'],
      ],
    );
  });

  it('names every corrupt record of TFRecord shards with its file and offset, and exits 1', async () => {
    const root = join(tempRoot, 'records');
    mkdirSync(root);
    const type = loadExampleType();
    const wnids = ['n01440764', 'n01443537'];
    const train = join(root, 'train-00000-of-00001');
    const val = join(root, 'validation-00000-of-00001');
    const records = [];
    for (let i = 0; i < 6; i++) records.push(modelsExample(type, await jpeg(i, 64, 48), i % 2, wnids[i % 2]!, `${wnids[i % 2]}_${i}.JPEG`));
    records[3] = modelsExample(type, Buffer.from('not a JPEG at all'), 1, wnids[1]!, 'n01443537_3.JPEG');
    const offsets = writeTfrecordFile(train, records);
    const bytes = readFileSync(train);
    bytes[offsets[1]! + 60]! ^= 0x04;
    writeFileSync(train, bytes.subarray(0, bytes.length - 5));
    const valOffsets = writeTfrecordFile(val, [
      modelsExample(type, await jpeg(7, 64, 48), 0, wnids[0]!, 'ILSVRC2012_val_00000001.JPEG'),
      modelsExample(type, await jpeg(8, 64, 48), 5, 'n09999999', 'ILSVRC2012_val_00000002.JPEG'),
    ]);

    const { status, report } = await check(root, '--json');
    assert.equal(status, 1);
    assert.deepEqual(report!.splits.train, { images: 3, perClass: { n01440764: 3, n01443537: 0 } });
    assert.deepEqual(report!.splits.val.images, 1);
    assert.deepEqual(
      report!.bad.map((bad) => [bad.file, bad.offset, bad.reason.replace(/: \d+ of \d+ bytes/, '')]),
      [
        [train, offsets[1], "CRC-32C mismatch in the record's data"],
        [train, offsets[5], 'truncated record'],
        [val, valOffsets[1], 'unknown WordNet ID n09999999: not among the training classes'],
        [train, offsets[3], 'does not decode: Input buffer contains unsupported image format'],
      ],
    );
  });

  it('exits 2 with one message for input it cannot use', async () => {
    const empty = join(tempRoot, 'empty');
    mkdirSync(empty);
    const result = await runCli(['data', 'check', empty]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /autoprune data: .*is not an ImageNet layout autoprune recognises/);
    const missing = await runCli(['data', 'check', join(tempRoot, 'nowhere')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /not found; expected a config file or a dataset directory/);
  });
});
