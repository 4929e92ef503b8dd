import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { augmentCifarBatch } from '../../engine/data/cifar10.js';
import { gatherBatch, type ImageDataset } from '../../engine/data/dataset.js';
import { inMemoryData, inMemorySource } from '../../engine/data/in-memory-source.js';
import type { SampleBatch } from '../../engine/data/source.js';
import { disposeNetwork } from '../../engine/network.js';
import { PhaseRunner } from '../../engine/phase-runner.js';
import { seededUniform } from '../../engine/random.js';
import { ReadAhead } from '../../engine/read-ahead.js';
import { createTrainer } from '../../engine/setup.js';
import { disposeBatch, makeBatch } from '../../engine/trainer.js';
import { type PhaseConfig, validateConfig } from '../../shared/config.js';
import { tinyNetwork } from '../helpers/tiny-network.js';

/** `count` 32x32x3 images with distinct values, of ten classes. */
function cifarLike(count: number): ImageDataset {
  return {
    name: 'cifar-like',
    count,
    height: 32,
    width: 32,
    channels: 3,
    numClasses: 10,
    images: Float32Array.from({ length: count * 3072 }, (_, i) => ((i * 7919) % 1000) / 1000),
    labels: Uint8Array.from({ length: count }, (_, i) => (i * 3) % 10),
  };
}

describe('the in-memory sample source', () => {
  const dataset = cifarLike(12);
  const indices = Uint32Array.of(5, 0, 11, 5);
  const train = { kind: 'train', batchSeed: 1234, sampleSeed: 99, epochs: [0, 0, 0, 0] } as const;

  it('reads a training batch exactly as the step loop built it before sources: rows in order, augmented from the batch seed', async () => {
    const read = await inMemorySource(dataset, augmentCifarBatch).read(indices, train);
    const rows = gatherBatch(dataset, indices);
    assert.deepEqual(read.pixels, { type: 'float32', values: augmentCifarBatch(rows.images, 4, seededUniform(1234, 'augment')) });
    assert.deepEqual([...read.labels], [...rows.labels]);
    assert.deepEqual([...read.indices], [...indices]);
  });

  it('leaves evaluation batches and sets without augmentation as they are', async () => {
    const rows = gatherBatch(dataset, indices);
    for (const batch of [
      await inMemorySource(dataset, augmentCifarBatch).read(indices, { kind: 'evaluate' }),
      await inMemorySource(dataset).read(indices, train),
    ]) {
      assert.deepEqual(batch.pixels, { type: 'float32', values: rows.images });
    }
  });

  it('knows labels without reading pixels, and refuses a sample it does not hold', () => {
    const source = inMemorySource(dataset);
    assert.equal(source.labelOf(4), dataset.labels[4]);
    assert.throws(() => source.labelOf(12), /sample 12 is not in cifar-like/);
    assert.deepEqual(source.shards, []);
  });

  it('turns uint8 pixels into normalised images on the device, and labels beyond 255 into one-hot rows', () => {
    const read: SampleBatch = {
      indices: Uint32Array.of(0, 1),
      pixels: { type: 'uint8', values: Uint8Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => i * 10), scale: [1, 0.5, 2], offset: [0, -1, 3] },
      labels: Int32Array.of(999, 300),
    };
    const batch = makeBatch(read, { height: 2, width: 2, channels: 3, numClasses: 1000 });
    const expected = Array.from({ length: 24 }, (_, i) => i * 10 * [1, 0.5, 2][i % 3]! + [0, -1, 3][i % 3]!);
    assert.deepEqual([...batch.images.dataSync()], expected);
    assert.deepEqual(batch.labels.shape, [2, 1000]);
    assert.deepEqual([...tf.argMax(batch.labels, 1).dataSync()], [999, 300]);
    disposeBatch(batch);
  });
});

describe('reading ahead', () => {
  /** Reads that resolve when the test says so, recording which were started. */
  function controlledReads(count: number) {
    const started: number[] = [];
    const resolvers: Array<(value: number) => void> = [];
    function* reads() {
      for (let i = 0; i < count; i++) {
        started.push(i);
        yield new Promise<number>((resolve) => resolvers.push(resolve));
      }
    }
    return { started, resolvers, reads: reads() };
  }

  it('keeps at most `depth` reads in flight beyond the one being waited for, in order', async () => {
    const { started, resolvers, reads } = controlledReads(5);
    const ahead = new ReadAhead(reads, 2);
    const first = ahead.next();
    assert.deepEqual(started, [0, 1, 2]);
    resolvers[0]!(10);
    assert.equal((await first)!.value, 10);
    const second = ahead.next();
    assert.deepEqual(started, [0, 1, 2, 3]);
    resolvers[1]!(11);
    assert.equal((await second)!.value, 11);
    const rest = [ahead.next(), ahead.next(), ahead.next()];
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    for (const [i, resolve] of resolvers.entries()) resolve(10 + i);
    assert.deepEqual(
      (await Promise.all(rest)).map((r) => r!.value),
      [12, 13, 14],
    );
    assert.equal(await ahead.next(), undefined);
  });

  it('reads only on demand at depth 0, and measures the wait', async () => {
    const { started, resolvers, reads } = controlledReads(2);
    const ahead = new ReadAhead(reads, 0);
    const first = ahead.next();
    assert.deepEqual(started, [0]);
    setTimeout(() => resolvers[0]!(1), 30);
    const { waitedMs } = (await first)!;
    assert.ok(waitedMs >= 20, `waited ${waitedMs} ms`);
  });

  it('hands a failed read to the step that takes it, and drops the failures of reads nobody takes', async () => {
    function* reads() {
      yield Promise.reject(new Error('bad record'));
      yield Promise.reject(new Error('never taken'));
    }
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const ahead = new ReadAhead(reads(), 1);
      await assert.rejects(ahead.next(), /bad record/);
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('the step loop with reads ahead', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  /** 2x2x1 images of two classes. */
  function tiny(count: number): ImageDataset {
    return {
      name: 'tiny',
      count,
      height: 2,
      width: 2,
      channels: 1,
      numClasses: 2,
      images: Float32Array.from({ length: count * 4 }, (_, i) => ((i * 37) % 11) / 10),
      labels: Uint8Array.from({ length: count }, (_, i) => i % 2),
    };
  }

  /** W and M after a dense and a prune phase with `prefetchBatches` batches read ahead. */
  async function trainedWith(prefetchBatches: number) {
    const config = validateConfig(
      {
        model: { name: 'lenet300' },
        data: { dataset: 'mnist', prefetchBatches },
        batchSize: 6,
        phases: [
          { phase: 'dense', steps: 5, weights: { lr: 0.05 } },
          { phase: 'prune', steps: 5, weights: { lr: 0.05 }, aux: { type: 'sgd', lr: 0.5 } },
        ],
      },
      'read-ahead test',
    );
    const network = tinyNetwork();
    const data = inMemoryData(tiny(40), tiny(9));
    const runner = new PhaseRunner(createTrainer(network, config), config, data);
    const waits: number[] = [];
    for (const [index, phase] of config.phases.entries()) {
      const optimizers = PhaseRunner.createOptimizers(phase as PhaseConfig);
      await runner.runSteps(phase, index, optimizers, runner.segment(phase, 0, phase.steps), {
        onProgress: (p) => {
          waits.push(p.inputWaitSeconds);
        },
      });
      optimizers.weights.dispose();
      optimizers.aux?.dispose();
    }
    const evaluation = await runner.evaluateShare('frozen');
    const parameters = network.parameters.map((p) => [...p.variable.dataSync()]);
    disposeNetwork(network);
    return { parameters, evaluation, waits };
  }

  it('trains to the same bits whatever the depth, and reports the wait for input', async () => {
    const none = await trainedWith(0);
    const deep = await trainedWith(3);
    assert.deepEqual(deep.parameters, none.parameters);
    assert.deepEqual(deep.evaluation, none.evaluation);
    assert.equal(none.evaluation.count, 9);
    assert.ok(none.waits.length > 0 && none.waits.every((w) => w >= 0 && Number.isFinite(w)));
  });
});
