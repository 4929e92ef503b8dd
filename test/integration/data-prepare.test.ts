import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPrepared } from '../../engine/data/imagenet/prepared.js';
import { runCli } from '../helpers/cli.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/** `autoprune data prepare` as a real process, on the shared fixture's TFRecord shards. */
describe('autoprune data prepare', () => {
  let root: string;
  let fixture: string;
  before(function () {
    const found = imagenetMiniFixture();
    if (!found) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    fixture = found;
    root = mkdtempSync(join(tmpdir(), 'autoprune-data-prepare-'));
  });
  after(() => root && rmSync(root, { recursive: true, force: true }));

  it('writes the shards as packs for two ranks, with the fixture classes', async () => {
    const out = join(root, 'prepared-shards');
    const result = await runCli(['data', 'prepare', join(fixture, 'tfrecord'), '--out', out, '--ranks', '2', '--short-side', '128']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /wrote 30 training and 10 validation images in 4 packs/);
    const prepared = await openPrepared(out);
    const truth = JSON.parse(readFileSync(join(fixture, 'truth.json'), 'utf8')) as { classes: string[] };
    assert.deepEqual(prepared.classes, truth.classes);
    assert.deepEqual(
      prepared.train.shards.map((shard) => shard.count),
      [15, 15],
    );
  });

  it('exits 2 naming the problem when the options are wrong', async () => {
    const result = await runCli(['data', 'prepare', join(fixture, 'folder')]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--out/);
  });
});
