import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { AllReducer } from '../../collective/index.js';
import { type BackendName, initBackend } from '../../engine/backend.js';
import type { ImageDataset } from '../../engine/data/dataset.js';
import { inMemoryData } from '../../engine/data/in-memory-source.js';
import { GraphBuilder, type NetworkGraph } from '../../engine/graph.js';
import { type ForwardContext, flatten, type MaskedDense } from '../../engine/layers.js';
import { featureCount, MaskedNetwork, type NormalizedConv, pooledShape, relu6 } from '../../engine/models/common.js';
import { disposeNetwork, type Network, type NetworkOptions } from '../../engine/network.js';
import { type GradientExchange, PhaseRunner, singleProcess } from '../../engine/phase-runner.js';
import { createNetwork, createTrainer } from '../../engine/setup.js';
import { type PhaseConfig, validateConfig } from '../../shared/config.js';
import { AllReduceExchange } from '../../worker/all-reduce-exchange.js';
import { openRing, type Rank, startRanks, stopRanks, TEST_OPTIONS } from '../helpers/collective-ring.js';
import { skipBecause } from '../helpers/skip.js';
import { ensureTensorflowAddon } from '../helpers/tensorflow-addon.js';

/**
 * Every tensor a training step or a gradient exchange makes is disposed by the time it returns: the
 * engine's tensor count (tf.memory(), as tfjs's own tests check) and the backend's data count are as
 * they were. A leak there grows memory every step of a long run.
 */

const config = validateConfig(
  {
    model: { name: 'lenet300' },
    data: { dataset: 'mnist' },
    batchSize: 8,
    phases: [
      { phase: 'dense', steps: 2, weights: { lr: 0.01 } },
      { phase: 'prune', steps: 2, weights: { lr: 0.01 }, aux: { type: 'sgd', lr: 0.1 } },
    ],
  },
  'tensor-leaks test',
);
const [densePhase, prunePhase] = config.phases as [PhaseConfig, PhaseConfig];

/** MNIST-shaped images and labels, deterministic and spread over all classes. */
function syntheticMnist(name: string, count: number): ImageDataset {
  const size = 28 * 28;
  return {
    name,
    count,
    height: 28,
    width: 28,
    channels: 1,
    numClasses: 10,
    images: Float32Array.from({ length: count * size }, (_, i) => ((i * 7919) % 256) / 255),
    labels: Uint8Array.from({ length: count }, (_, i) => (i * 3) % 10),
  };
}

const data = inMemoryData(syntheticMnist('synthetic/train', 64), syntheticMnist('synthetic/test', 16));

/**
 * conv, depthwise conv and pointwise conv, each followed by batch norm and ReLU6, then max pool and
 * dense: a step through it runs every wasm training kernel and folds batch-norm statistics, which
 * LeNet-300-100 has none of.
 */
class SmallConvNet extends MaskedNetwork {
  readonly name = 'small-conv';
  private readonly blocks: readonly NormalizedConv[];
  private readonly fc: MaskedDense;

  constructor(options: NetworkOptions) {
    super(options, { inputShape: [28, 28, 1], numClasses: 10 }, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    const conv = this.layers.convBn('conv', 'conv_bn', { inputShape: this.inputShape, filters: 4, kernelSize: 3, strides: 2 }, relu6);
    const depthwise = this.layers.depthwiseBn('depthwise', 'depthwise_bn', { inputShape: conv.outputShape, kernelSize: 3, depthMultiplier: 2 }, relu6);
    const pointwise = this.layers.convBn('pointwise', 'pointwise_bn', { inputShape: depthwise.outputShape, filters: 6, kernelSize: 1 }, relu6);
    this.blocks = [conv, depthwise, pointwise];
    const pooled = pooledShape(pointwise.outputShape, 2, 2, 'valid');
    this.fc = this.layers.dense('fc', { inputFeatures: featureCount(pooled), units: this.numClasses });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    const features = this.blocks.reduce<tf.Tensor>((x, block) => block.apply(x, ctx), images) as tf.Tensor4D;
    return this.fc.apply(flatten(tf.maxPool(features, 2, 2, 'valid')), ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    const features = this.blocks.reduce((x, block) => block.trace(g, x), g.input);
    const pooled = g.maxPool(features, 2, 2, 'valid', pooledShape(g.shapeOf(features), 2, 2, 'valid'));
    return g.finish(g.masked(this.fc, g.flatten(pooled)));
  }
}

const NETWORKS: readonly { readonly name: string; readonly build: () => Network }[] = [
  { name: 'LeNet-300-100', build: () => createNetwork(config, data.train) },
  {
    name: 'a small conv net with batch norm',
    build: () => new SmallConvNet({ seed: config.seed, granularityOf: () => 'weight', maskInit: config.prune.maskInit }),
  },
];

/** Asserts that `body` leaves as many tensors, and as many backend data buffers, as it found. */
async function assertNoLeak(what: string, body: () => Promise<void>): Promise<void> {
  const tensors = tf.memory().numTensors;
  const buffers = tf.engine().backend.numDataIds();
  await body();
  assert.equal(tf.memory().numTensors - tensors, 0, `${what}: tensors left behind`);
  assert.equal(tf.engine().backend.numDataIds() - buffers, 0, `${what}: backend data left behind`);
}

/**
 * Runs step 0 of `phase` as a warm-up (the optimizers create their slots lazily, on their first
 * update) and asserts that step 1 leaves nothing behind.
 */
async function assertStepLeaksNothing(buildNetwork: () => Network, phase: PhaseConfig, exchange: GradientExchange): Promise<void> {
  const network = buildNetwork();
  const phaseIndex = config.phases.indexOf(phase);
  const optimizers = PhaseRunner.createOptimizers(phase);
  try {
    const runner = new PhaseRunner(createTrainer(network, config), config, data, { world: 1, rank: 0, exchange });
    await runner.runSteps(phase, phaseIndex, optimizers, runner.segment(phase, 0, 1));
    await assertNoLeak(`a ${phase.phase} step`, () => runner.runSteps(phase, phaseIndex, optimizers, runner.segment(phase, 1, 2)));
  } finally {
    optimizers.weights.dispose();
    optimizers.aux?.dispose();
    disposeNetwork(network);
  }
}

describe('tensor leaks', () => {
  let previousBackend: string | undefined;
  let ranks: Rank[];
  let reducer: AllReducer;

  before(async () => {
    previousBackend = tf.getBackend();
    ranks = await startRanks(1);
    [reducer] = (await openRing(ranks, 1, TEST_OPTIONS)) as [AllReducer];
  });

  after(async () => {
    await reducer.close();
    await stopRanks(ranks);
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  for (const backend of ['cpu', 'wasm', 'tensorflow'] as const satisfies readonly BackendName[]) {
    for (const network of NETWORKS) {
      describe(`${network.name} on ${backend}`, () => {
        before(async function () {
          this.timeout(30 * 60_000);
          if (backend === 'tensorflow') {
            const addon = await ensureTensorflowAddon();
            if ('missing' in addon) skipBecause(this, `the tensorflow backend cannot be built here: ${addon.missing}`);
          }
          await initBackend(backend, () => undefined);
        });

        it('a prune step (a W step and an M step) leaves no tensor behind', async () => {
          await assertStepLeaksNothing(network.build, prunePhase, singleProcess);
        });

        it('a dense step leaves no tensor behind', async () => {
          await assertStepLeaksNothing(network.build, densePhase, singleProcess);
        });

        it('a prune step through the all-reduce exchange (world of one) leaves no tensor behind', async () => {
          await assertStepLeaksNothing(network.build, prunePhase, new AllReduceExchange(reducer));
        });
      });
    }
  }

  describe('AllReduceExchange.reduce (world of one)', () => {
    before(async () => {
      await initBackend('cpu', () => undefined);
    });

    it('disposes the tensors it is given and returns new ones, its share of their sum', async () => {
      const given = new Map<string, tf.Tensor>([
        ['fc1.weight', tf.tensor2d([1, -2, 3, -4, 5, 6], [2, 3])],
        ['fc1.bias', tf.tensor1d([8, -16])],
      ]);
      const inputs = [...given.values()];
      const tensors = tf.memory().numTensors;
      const buffers = tf.engine().backend.numDataIds();

      const reduced = await new AllReduceExchange(reducer).reduce(given, 0.25, { step: 0 });

      assert.ok(
        inputs.every((tensor) => tensor.isDisposed),
        'the given tensors are disposed',
      );
      assert.deepEqual([...reduced.keys()], ['fc1.weight', 'fc1.bias']);
      for (const tensor of reduced.values()) assert.ok(!inputs.includes(tensor) && !tensor.isDisposed, 'a returned tensor is new and alive');
      assert.equal(tf.memory().numTensors, tensors, 'as many tensors as it was given, and no more');
      assert.equal(tf.engine().backend.numDataIds(), buffers, 'as many backend buffers as it was given, and no more');
      assert.deepEqual(reduced.get('fc1.weight')!.shape, [2, 3]);
      assert.deepEqual(Array.from(reduced.get('fc1.weight')!.dataSync()), [0.25, -0.5, 0.75, -1, 1.25, 1.5]);
      assert.deepEqual(Array.from(reduced.get('fc1.bias')!.dataSync()), [2, -4]);
      tf.dispose([...reduced.values()]);
    });
  });
});
