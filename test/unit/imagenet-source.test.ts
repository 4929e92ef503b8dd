import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { CatalogSplit } from '../../engine/data/imagenet/catalog.js';
import { openCatalog } from '../../engine/data/imagenet/catalog.js';
import { type ImageNetData, imageNetData, openImageNet } from '../../engine/data/imagenet/source.js';
import type { ReadPurpose, SampleSource, SkippedSample, TrainingData } from '../../engine/data/source.js';
import { disposeNetwork } from '../../engine/network.js';
import { type PhaseHooks, PhaseRunner, type Replica } from '../../engine/phase-runner.js';
import { type AuditEntry, auditSamples, samplesOutsideOwnShards } from '../../engine/sample-audit.js';
import { splitTrainingSet } from '../../engine/sampling.js';
import { createNetwork, createTrainer } from '../../engine/setup.js';
import { shardOwners } from '../../engine/shard-order.js';
import { makeBatch } from '../../engine/trainer.js';
import { type PhaseConfig, type RunConfig, validateConfig } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import { AllReduceExchange } from '../../worker/all-reduce-exchange.js';
import { openRing, startRanks, stopRanks, TEST_OPTIONS } from '../helpers/collective-ring.js';
import { wnid, writeGeneratedImageNet } from '../helpers/imagenet-generated.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * The ImageNet SampleSource: Part A's catalog and Part B's decode pool behind the engine's view of a set.
 * Labels come through unchanged from the fixture written by TensorFlow and Pillow; training pixels are a
 * function of (seed, epoch, sample) only; bad samples fail or are skipped as configured; and the shard audit:
 * ranks read only their own shards, every sample of each half once per epoch, across a resume at another
 * world size.
 */

const root = mkdtempSync(join(tmpdir(), 'autoprune-imagenet-source-'));
after(() => rmSync(root, { recursive: true, force: true }));

function dataConfig(dir: string, extra: Record<string, unknown> = {}): ImageNetData {
  const config = validateConfig(
    {
      model: { name: 'lenet300' },
      data: { dataset: 'imagenet', dir, cacheDir: join(root, 'cache'), imageSize: 16, classes: 4, decodeThreads: 1, ...extra },
      phases: [{ phase: 'dense', steps: 1, weights: { lr: 0.01 } }],
    },
    'imagenet-source test',
  );
  return config.data as ImageNetData;
}

const everything = (source: SampleSource) => Uint32Array.from({ length: source.count }, (_, i) => i);
const train = (epoch: number, count: number): ReadPurpose => ({ kind: 'train', batchSeed: 0, sampleSeed: 7, epochs: new Array<number>(count).fill(epoch) });

describe('the ImageNet sample source', function () {
  this.timeout(120_000);

  it("reads the shared fixture's folders and shards with the labels of truth.json, as 3-channel bytes", async function () {
    const fixture = imagenetMiniFixture();
    if (!fixture) return skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    const truth = JSON.parse(readFileSync(join(fixture, 'truth.json'), 'utf8')) as {
      classes: string[];
      train: Record<string, number>;
      val: Record<string, number>;
    };
    for (const layout of ['folder', 'tfrecord']) {
      const data = await openImageNet({ ...dataConfig(join(fixture, layout)), classes: 5 });
      try {
        for (const [source, expected] of [
          [data.train, truth.train],
          [data.test, truth.val],
        ] as const) {
          const batch = await source.read(everything(source), source === data.train ? train(0, source.count) : { kind: 'evaluate' });
          const counts: Record<string, number> = {};
          for (const label of batch.labels) counts[truth.classes[label]!] = (counts[truth.classes[label]!] ?? 0) + 1;
          assert.deepEqual(counts, expected, `${layout} ${source.name}`);
          assert.deepEqual(
            [...batch.labels],
            [...everything(source)].map((i) => source.labelOf(i)),
          );
          assert.equal(batch.pixels.type, 'uint8');
          assert.equal(batch.pixels.values.length, source.count * 16 * 16 * 3);
        }
        assert.equal(data.train.shards.length, layout === 'tfrecord' ? 2 : 0);
      } finally {
        await data.close();
      }
    }
  });

  it('crops a training sample as a function of (seed, epoch, sample), whatever batch it is read in', async () => {
    const dir = await writeGeneratedImageNet(join(root, 'folders'), { format: 'folders', classes: 4, perClass: 5, valPerClass: 2, size: 40 });
    const data = await openImageNet(dataConfig(dir));
    try {
      const pixelsOf = async (indices: number[], epoch: number, position: number) =>
        (await data.train.read(Uint32Array.from(indices), train(epoch, indices.length))).pixels.values.subarray(position * 768, (position + 1) * 768);
      const alone = await pixelsOf([6], 0, 0);
      assert.deepEqual(await pixelsOf([3, 6, 11], 0, 1), alone);
      assert.notDeepEqual(await pixelsOf([6], 1, 0), alone, 'another epoch, another crop');
      const evaluation = (await data.test.read(Uint32Array.of(1, 2), { kind: 'evaluate' })).pixels.values;
      assert.deepEqual((await data.test.read(Uint32Array.of(1, 2), { kind: 'evaluate' })).pixels.values, evaluation);
      // Normalised on the device with ImageNet's mean and std: a byte of 0 is -mean/std.
      const zeros = await data.test.read(Uint32Array.of(0), { kind: 'evaluate' });
      zeros.pixels.values.fill(0);
      const batch = makeBatch(zeros, data.test);
      assert.ok(Math.abs(batch.images.dataSync()[0]! - -0.485 / 0.229) < 1e-5);
      tf.dispose([batch.images, batch.labels]);
    } finally {
      await data.close();
    }
  });

  it('refuses a dataset with another number of classes than data.classes', async () => {
    const dir = join(root, 'folders');
    await assert.rejects(
      openImageNet({ ...dataConfig(dir), classes: 1000 }),
      (e: InputError) => e instanceof InputError && /data\.classes.*has 4 classes/.test(e.message),
    );
  });

  it('fails on an image that does not decode, naming its file, or skips it and says so', async () => {
    const dir = join(root, 'damaged');
    cpSync(join(root, 'folders'), dir, { recursive: true });
    const victim = join(dir, 'train', wnid(1), `${wnid(1)}_2.JPEG`);
    writeFileSync(victim, readFileSync(victim).subarray(0, 200));
    const failing = await openImageNet(dataConfig(dir));
    try {
      await assert.rejects(
        failing.train.read(everything(failing.train), train(0, 20)),
        (e: InputError) => e instanceof InputError && e.message.includes(victim),
      );
    } finally {
      await failing.close();
    }
    const skipped: SkippedSample[] = [];
    const skipping = await openImageNet(dataConfig(dir, { badSamples: 'skip' }), { onSkipped: (s) => skipped.push(s) });
    try {
      const batch = await skipping.train.read(everything(skipping.train), train(0, 20));
      assert.equal(batch.indices.length, 19);
      assert.equal(batch.pixels.values.length, 19 * 768);
      assert.deepEqual(
        [...batch.labels],
        [...batch.indices].map((i) => skipping.train.labelOf(i)),
      );
      assert.equal(skipped.length, 1);
      assert.equal(skipped[0]!.file, victim);
      assert.equal(skipped[0]!.split, 'train');
      assert.equal(skipped[0]!.splitSize, 20);
    } finally {
      await skipping.close();
    }
  });

  it('reports records found bad while indexing, with their shard and offset, under skip', async () => {
    const dir = await writeGeneratedImageNet(join(root, 'bad-shards'), { format: 'tfrecord', classes: 4, perClass: 3, valPerClass: 1, shards: 2 });
    const shard = join(dir, 'train-00001-of-00002');
    const bytes = readFileSync(shard);
    bytes[40]! ^= 0xff; // inside the first record's data: its CRC no longer matches
    writeFileSync(shard, bytes);
    await assert.rejects(openImageNet(dataConfig(dir)), (e: Error) => e instanceof InputError && e.message.includes(shard));
    const skipped: SkippedSample[] = [];
    const data = await openImageNet(dataConfig(dir, { badSamples: 'skip' }), { onSkipped: (s) => skipped.push(s) });
    await data.close();
    assert.deepEqual(
      skipped.map(({ file, offset, split, splitSize }) => ({ file, offset, split, splitSize })),
      [{ file: shard, offset: 0, split: 'train', splitSize: 12 }],
    );
    assert.equal(data.train.count, 11);
  });
});

describe('the shard audit on ImageNet shards', function () {
  this.timeout(300_000);

  const phases = [{ phase: 'prune', steps: 10, weights: { lr: 0.01 }, aux: { type: 'sgd', lr: 0.1 } }];
  const batchSize = 6;

  /** A split that records the files each read opens: the reader instrumented. */
  function recording(split: CatalogSplit, opened: Set<string>): CatalogSplit {
    return {
      count: split.count,
      shards: split.shards,
      bad: split.bad,
      labelOf: (index) => split.labelOf(index),
      describe: (index) => split.describe(index),
      readEncoded: (indices) => {
        for (const index of indices) opened.add(split.describe(index).replace(/@\d+$/, ''));
        return split.readEncoded(indices);
      },
    };
  }

  /**
   * Steps [from, to) of the prune phase on `world` ranks in this process, each with its own catalog
   * reader (instrumented) and decode pool, gradients summed by the real ring all-reduce.
   */
  async function runRanks(config: RunConfig, world: number, generation: number, from: number, to: number) {
    const ranks = await startRanks(world);
    const reducers = await openRing(ranks, generation, TEST_OPTIONS);
    const opened = Array.from({ length: world }, () => new Set<string>());
    const evaluated = Array.from({ length: world }, () => new Set<string>());
    const entries: AuditEntry[] = [];
    try {
      await Promise.all(
        reducers.map(async (reducer, rank) => {
          const catalog = await openCatalog(config.data.dir!, { cacheDir: join(root, 'cache'), badSamples: 'fail' });
          const data: TrainingData = imageNetData(
            { ...catalog, train: recording(catalog.train, opened[rank]!), val: recording(catalog.val, evaluated[rank]!) },
            config.data as ImageNetData,
          );
          const network = createNetwork(config, data.train);
          try {
            const replica: Replica = { world, rank, exchange: new AllReduceExchange(reducer) };
            const runner = new PhaseRunner(createTrainer(network, config), config, data, replica);
            const phase = config.phases[0] as PhaseConfig;
            const hooks: PhaseHooks = {
              onBatch: (b) => entries.push({ generation, phaseIndex: b.phaseIndex, step: b.step, kind: b.kind, rank, samples: [...b.samples] }),
            };
            await runner.runSteps(phase, 0, PhaseRunner.createOptimizers(phase), runner.segment(phase, from, to), hooks);
            await runner.evaluateShare('frozen');
          } finally {
            disposeNetwork(network);
            await data.close();
          }
        }),
      );
    } finally {
      await Promise.all(reducers.map((r) => r.close()));
      await stopRanks(ranks);
    }
    return { entries, opened, evaluated };
  }

  it('has each rank open only its own shards, and uses every sample of each half once per epoch, across a resume at another world size', async () => {
    await tf.setBackend('cpu');
    const dir = await writeGeneratedImageNet(join(root, 'shards'), { format: 'tfrecord', classes: 4, perClass: 12, valPerClass: 2, shards: 6 });
    const config = validateConfig(
      { seed: 5, model: { name: 'lenet300' }, data: { dataset: 'imagenet', dir, imageSize: 16, classes: 4, decodeThreads: 1 }, batchSize, phases },
      'audit test',
    );
    const catalog = await openCatalog(dir, { cacheDir: join(root, 'cache'), badSamples: 'fail' });
    const shards = catalog.train.shards;
    // Two workers for steps 0-3, then the run resumes mid-epoch (a half has 24 samples: 4 steps) with three.
    const before = await runRanks(config, 2, 1, 0, 3);
    const after = await runRanks(config, 3, 2, 3, 10);
    const entries = [...before.entries, ...after.entries];

    const audit = auditSamples(entries, { seed: 5, trainSamples: 48, batchSize, phases, shards });
    assert.deepEqual(audit, { lost: 0, repeated: 0, wrongSteps: [] });
    assert.equal(samplesOutsideOwnShards(entries, shards), 0);
    // Epoch 0 of each half (steps 0-3, across the resume): every sample exactly once.
    const split = splitTrainingSet(5, 48);
    for (const [kind, half] of [
      ['weight', split.weight],
      ['aux', split.aux],
    ] as const) {
      const used = entries.filter((e) => e.kind === kind && e.step < 4).flatMap((e) => e.samples);
      assert.deepEqual(
        used.sort((a, b) => a - b),
        [...half],
      );
    }
    // The reader, instrumented: each rank opened only the files of the shards it owns.
    for (const [world, run] of [
      [2, before],
      [3, after],
    ] as const) {
      const owners = shardOwners(shards, world)!;
      run.opened.forEach((files, rank) => {
        const own = new Set(shards.filter((_, s) => owners[s] === rank).map((s) => s.file));
        assert.ok(files.size > 0);
        for (const file of files) assert.ok(own.has(file), `rank ${rank} of ${world} opened ${file}`);
      });
    }
    // One validation shard cannot be shared by two or three ranks: the evaluation falls back to samples one by one.
    assert.ok(before.evaluated.every((files) => files.size === 1));
  });
});
