import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { countNetwork } from '../../engine/counters.js';
import type { Granularity } from '../../engine/gates.js';
import { ForwardContext, type GateMode, type MaskedLayer } from '../../engine/layers.js';
import { buildNetwork, isModelName, MODEL_DEFAULTS, MODEL_NAMES, type ModelName } from '../../engine/models/index.js';
import { disposeNetwork, type Network, type NetworkOptions } from '../../engine/network.js';
import { MODEL_NAMES as CONFIG_MODEL_NAMES } from '../../shared/config.js';

/** Mean 0.5, std 0.01, truncated at 2σ: every gate starts open. */
const OPEN_MASKS = { mean: 0.5, std: 0.01 };

function options(overrides: Partial<NetworkOptions> = {}): NetworkOptions {
  return { seed: 7, granularityOf: () => 'weight', maskInit: OPEN_MASKS, ...overrides };
}

/** Builds a network, hands it to `use`, disposes it and checks that building left no tensor behind. */
async function withNetwork<T>(name: ModelName, networkOptions: NetworkOptions, use: (network: Network) => T | Promise<T>): Promise<T> {
  const before = tf.memory();
  const network = buildNetwork(name, networkOptions);
  let result: T;
  try {
    result = await use(network);
  } finally {
    disposeNetwork(network);
  }
  const after = tf.memory();
  assert.equal(after.numTensors, before.numTensors, `${name} leaves tensors behind`);
  assert.equal(after.numBytes, before.numBytes, `${name} leaves memory behind`);
  return result;
}

function layerNamed(network: Network, name: string): MaskedLayer {
  const layer = network.maskedLayers.find((l) => l.name === name);
  assert.ok(layer, `${network.name} has no layer ${name}`);
  return layer;
}

/** Sets the given flat entries of a layer's mask negative, closing their gates. */
function closeGates(layer: MaskedLayer, indices: readonly number[]): void {
  tf.tidy(() => {
    const values = layer.mask!.variable.dataSync().slice();
    for (const i of indices) values[i] = -1;
    layer.mask!.variable.assign(tf.tensor(values, layer.mask!.variable.shape));
  });
}

function context(training: boolean, gates: GateMode): ForwardContext {
  return new ForwardContext(training, gates, 'softplus', 'sign', 11);
}

function images(network: Network): tf.Tensor4D {
  return tf.randomNormal([2, ...network.inputShape], 0, 1, 'float32', 5);
}

/** Logits of two random images, checked for shape and finiteness. */
function logits(network: Network, training: boolean, gates: GateMode): Float32Array {
  return tf.tidy(() => {
    const out = network.apply(images(network), context(training, gates));
    assert.deepEqual(out.shape, [2, network.numClasses], `${network.name} ${gates}`);
    const values = Float32Array.from(out.dataSync());
    assert.ok(values.every(Number.isFinite), `${network.name} ${gates}: non-finite logits`);
    return values;
  });
}

/**
 * Exact figures measured from the built networks, and the published ones they must be within 1% of.
 * MACs count the conv and dense kernels (counters.ts).
 */
const FIGURES: Record<ModelName, { params: number; macs: number; publishedMacs: number }> = {
  lenet300: { params: 266_610, macs: 266_200, publishedMacs: 266_200 },
  lenet5: { params: 431_080, macs: 2_293_000, publishedMacs: 2_293_000 },
  // Li et al., "Pruning Filters for Efficient ConvNets": 1.5e7 parameters, 3.13e8 FLOPs.
  'vgg-cifar': { params: 14_987_722, macs: 313_463_808, publishedMacs: 313e6 },
  alexnet: { params: 61_100_840, macs: 714_188_480, publishedMacs: 714e6 },
  resnet50: { params: 25_557_032, macs: 4_089_184_256, publishedMacs: 4.089e9 },
  mobilenetv2: { params: 3_504_872, macs: 300_774_272, publishedMacs: 300.8e6 },
};

/** Parameter names a network must have (readable, torchvision's where it has them) and must not. */
const NAMES: Record<ModelName, { present: string[]; absent: string[] }> = {
  lenet300: { present: ['fc1.weight', 'fc2.mask', 'fc3.bias'], absent: [] },
  lenet5: { present: ['conv1.weight', 'conv2.bias', 'fc1.mask', 'fc2.weight'], absent: [] },
  'vgg-cifar': { present: ['conv1.weight', 'conv13.bn.gamma', 'fc1.bias', 'fc1.bn.beta', 'fc2.mask'], absent: ['conv1.bias'] },
  alexnet: { present: ['conv1.weight', 'conv5.bias', 'fc6.weight', 'fc8.mask'], absent: [] },
  resnet50: {
    present: ['conv1.weight', 'bn1.gamma', 'layer2.0.conv2.weight', 'layer2.0.bn2.beta', 'layer1.0.downsample.0.weight', 'layer4.2.conv3.mask', 'fc.bias'],
    absent: ['layer1.1.downsample.0.weight', 'conv1.bias'],
  },
  mobilenetv2: {
    present: [
      'features.0.conv.weight',
      'features.1.depthwise.weight',
      'features.3.expand.bn.gamma',
      'features.17.project.weight',
      'features.18.conv.weight',
      'classifier.weight',
    ],
    // t = 1 has no expand conv.
    absent: ['features.1.expand.weight'],
  },
};

/** Sizes for forward passes: the ImageNet nets at small inputs (AlexNet's windows need at least 63). */
const SMALL: Record<ModelName, Partial<NetworkOptions>> = {
  lenet300: {},
  lenet5: {},
  'vgg-cifar': {},
  alexnet: { inputShape: [64, 64, 3], numClasses: 10 },
  resnet50: { inputShape: [32, 32, 3], numClasses: 10 },
  mobilenetv2: { inputShape: [32, 32, 3], numClasses: 10 },
};

describe('models', function () {
  this.timeout(60_000);

  before(async () => {
    await tf.setBackend('cpu');
  });

  it('names the same models as the run config', () => {
    assert.deepEqual(MODEL_NAMES, CONFIG_MODEL_NAMES);
    assert.ok(isModelName('resnet50'));
    assert.ok(!isModelName('resnet18'));
  });

  for (const name of MODEL_NAMES) {
    it(`${name}: parameter and MAC counts at the default size`, async () => {
      // Neuron gates keep the masks small, so the big nets build faster; counts do not depend on them.
      const asked = new Set<string>();
      const granularityOf = (layer: string): Granularity => {
        asked.add(layer);
        return 'neuron';
      };
      await withNetwork(name, options({ granularityOf }), async (network) => {
        assert.deepEqual(network.inputShape, MODEL_DEFAULTS[name].inputShape);
        assert.equal(network.numClasses, MODEL_DEFAULTS[name].numClasses);
        assert.deepEqual(
          [...asked],
          network.maskedLayers.map((l) => l.name),
        );
        const parameterNames = network.parameters.map((p) => p.name);
        for (const present of NAMES[name].present) assert.ok(parameterNames.includes(present), present);
        for (const absent of NAMES[name].absent) assert.ok(!parameterNames.includes(absent), absent);
        const count = await countNetwork(network);
        const expected = FIGURES[name];
        assert.equal(count.modelParams, expected.params);
        assert.equal(count.totals.flops, expected.macs);
        assert.ok(Math.abs(count.totals.flops / expected.publishedMacs - 1) < 0.01, `${count.totals.flops} MACs`);
        assert.equal(count.totals.remaining, count.totals.params);
        assert.equal(count.totals.flopsEffective, count.totals.flops);
      });
    });

    it(`${name}: forward passes with every gate mode and granularity`, async () => {
      const small = options(SMALL[name]);
      await withNetwork(name, small, (network) => {
        assert.deepEqual(network.inputShape, small.inputShape ?? MODEL_DEFAULTS[name].inputShape);
        logits(network, true, 'train');
        // With every gate open, constant masks change nothing.
        const dense = logits(network, false, 'off');
        const frozen = logits(network, false, 'frozen');
        assert.deepEqual(frozen, dense);
      });
      await withNetwork(name, options({ ...SMALL[name], granularityOf: () => 'neuron' }), (network) => {
        assert.ok(network.maskedLayers.every((l) => l.granularity === 'neuron'));
        logits(network, true, 'train');
        logits(network, false, 'frozen');
      });
    });
  }

  it('counts closed weight and neuron gates exactly', async () => {
    const granularityOf = (layer: string): Granularity => (layer === 'conv1' || layer === 'fc1' ? 'neuron' : 'weight');
    await withNetwork('lenet5', options({ granularityOf }), async (network) => {
      const before = await countNetwork(network);
      closeGates(layerNamed(network, 'conv1'), [0, 5, 19]); // 3 filters of 5x5x1 at 24x24 positions
      // 4 weights at 8x8 positions; weight 0 reads input channel 0, which conv1's closed filter 0 removes anyway.
      closeGates(layerNamed(network, 'conv2'), [0, 50, 3107, 24_549]);
      closeGates(layerNamed(network, 'fc1'), [1, 2, 499]); // 3 units of 800 inputs
      const after = await countNetwork(network);
      const drop = (layer: string, field: 'remaining' | 'flopsEffective') =>
        before.layers.find((l) => l.name === layer)![field] - after.layers.find((l) => l.name === layer)![field];
      assert.equal(drop('conv1', 'remaining'), 3 * 25);
      assert.equal(drop('conv1', 'flopsEffective'), 3 * 25 * 576);
      assert.equal(drop('conv2', 'remaining'), 4);
      // Downstream: conv1's 3 closed filters take conv2's 3 input channels (5x5x50 weights each) with them.
      const removedInputs = 3 * 25 * 50;
      assert.equal(drop('conv2', 'flopsEffective'), (removedInputs + 3) * 64);
      assert.equal(drop('fc1', 'remaining'), 3 * 800);
      assert.equal(drop('fc1', 'flopsEffective'), 3 * 800);
      assert.equal(drop('fc2', 'remaining'), 0);
      assert.equal(drop('fc2', 'flopsEffective'), 3 * 10); // fc1's 3 closed units are 3 inputs of fc2
      assert.equal(before.totals.remaining - after.totals.remaining, 75 + 4 + 2400);
      assert.equal(before.totals.flopsEffective - after.totals.flopsEffective, 75 * 576 + (removedInputs + 3) * 64 + 2400 + 30);
      assert.equal(after.totals.params, before.totals.params);
      assert.equal(after.modelParams, before.modelParams);
    });
    await withNetwork('mobilenetv2', options({ ...SMALL.mobilenetv2, granularityOf: () => 'neuron' }), async (network) => {
      const depthwise = layerNamed(network, 'features.3.depthwise');
      assert.deepEqual(depthwise.mask!.variable.shape, [144]);
      const before = await countNetwork(network);
      closeGates(depthwise, [0, 100]); // 2 channels of 3x3 taps
      const after = await countNetwork(network);
      assert.equal(before.totals.remaining - after.totals.remaining, 2 * 9);
      assert.equal(before.totals.flopsEffective - after.totals.flopsEffective, 2 * 9 * depthwise.positions);
    });
  });

  it('passes gradients to every weight and gate in training', async () => {
    const cases: Array<[ModelName, Granularity]> = [
      ['lenet5', 'weight'],
      ['mobilenetv2', 'neuron'],
    ];
    for (const [name, granularity] of cases) {
      await withNetwork(name, options({ ...SMALL[name], granularityOf: () => granularity }), (network) => {
        const trainable = network.parameters.filter((p) => p.role !== 'state');
        tf.tidy(() => {
          const x = images(network);
          const { grads } = tf.variableGrads(
            () => tf.mean(tf.square(network.apply(x, context(true, 'train')))) as tf.Scalar,
            trainable.map((p) => p.variable),
          );
          for (const p of trainable) {
            const grad = grads[p.variable.name];
            assert.ok(grad, `${name}: no gradient for ${p.name}`);
            assert.deepEqual(grad.shape, p.variable.shape);
            const values = grad.dataSync();
            assert.ok(values.every(Number.isFinite), `${name}: non-finite gradient for ${p.name}`);
            if (p.role === 'aux')
              assert.ok(
                values.some((v) => v !== 0),
                `${name}: zero gradient for ${p.name}`,
              );
          }
        });
      });
    }
  });
});
