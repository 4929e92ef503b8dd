import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { stepGate } from '../../engine/gates.js';
import { GraphBuilder, type NetworkGraph } from '../../engine/graph.js';
import { type ForwardContext, globalAveragePool, type MaskedDense } from '../../engine/layers.js';
import { identity, MaskedNetwork, type NormalizedConv, relu, relu6 } from '../../engine/models/common.js';
import { disposeNetwork, type Network, type NetworkOptions } from '../../engine/network.js';
import { planChannels } from '../../engine/thin/channel-plan.js';
import { toLayersModel } from '../../engine/thin/layers-model.js';
import { modelSize } from '../../engine/thin/model-size.js';
import { thinModel } from '../../engine/thin/thin-model.js';
import { readWeights } from '../../engine/thin/weights.js';
import { maskedLogits, randomImages, randomlyPrunedNetwork, relativeError } from '../helpers/pruned-network.js';

/**
 * The channel plan and the thin model, in process: what closed gates remove downstream, the constants of
 * removed channels folded where padding allows, channels an addition needs kept with zero weights, and a
 * layer whose every gate is closed. The exported files are checked against third-party runtimes in
 * test/integration/thin-export.test.ts.
 */

/**
 * stem → max pool 3x3 (explicit padding 1) → expand (1x1, neuron gates, ReLU6) → depthwise 3x3 (ReLU6;
 * with `gateHidden`, the expansion's gates again, as MobileNetV2 gates its hidden channels) → project
 * (1x1, neuron gates, no ReLU) + pooled stem → ReLU → dead (1x1, every gate closed) → average → fc. The project conv's gates feed an
 * addition (what the channel rule forbids in the real networks): its closed channels must stay, zeroed.
 * A closed expansion channel leaves the depthwise filter a constant after its batch norm, which the
 * project conv (no bias) takes into its batch norm's mean.
 */
class ResidualTestNet extends MaskedNetwork {
  readonly name = 'residual-test';
  private readonly stem: NormalizedConv;
  private readonly expand: NormalizedConv;
  private readonly depthwise: NormalizedConv;
  private readonly project: NormalizedConv;
  private readonly dead: NormalizedConv;
  private readonly fc: MaskedDense;

  constructor(
    options: NetworkOptions,
    private readonly gateHidden: boolean,
  ) {
    super(options, { inputShape: [9, 9, 3], numClasses: 3 }, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    this.stem = this.layers.convBn('stem', 'stem.bn', { inputShape: this.inputShape, filters: 8, kernelSize: 3, strides: 2 }, relu);
    this.expand = this.layers.convBn('expand', 'expand.bn', { inputShape: this.stem.outputShape, filters: 12, kernelSize: 1 }, relu6);
    this.depthwise = this.layers.depthwiseBn('depthwise', 'depthwise.bn', { inputShape: this.expand.outputShape, kernelSize: 3 }, relu6);
    this.project = this.layers.convBn('project', 'project.bn', { inputShape: this.depthwise.outputShape, filters: 8, kernelSize: 1 }, identity);
    this.dead = this.layers.convBn('dead', 'dead.bn', { inputShape: this.project.outputShape, filters: 4, kernelSize: 1 }, relu);
    this.fc = this.layers.dense('fc', { inputFeatures: 4, units: this.numClasses, useBias: true });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    const x = tf.maxPool(this.stem.apply(images, ctx) as tf.Tensor4D, 3, 1, 1);
    let hidden = this.depthwise.apply(this.expand.apply(x, ctx), ctx);
    if (this.gateHidden && ctx.gates !== 'off') hidden = tf.mul(hidden, stepGate(this.expand.conv.mask!.variable));
    const y = this.project.apply(hidden, ctx);
    const z = tf.relu(tf.add(x, y));
    return this.fc.apply(globalAveragePool(this.dead.apply(z, ctx)), ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    const stem = this.stem.trace(g, g.input);
    const x = g.maxPool(stem, 3, 1, 1, g.shapeOf(stem));
    const hidden = this.depthwise.trace(g, this.expand.trace(g, x));
    const y = this.project.trace(g, this.gateHidden ? g.gate(this.expand.conv, hidden) : hidden);
    const z = g.activation('relu', g.add(x, y));
    return g.finish(g.masked(this.fc, g.globalAveragePool(this.dead.trace(g, z))));
  }
}

const NEURON_LAYERS = new Set(['expand', 'project', 'dead']);

/** The test net with random batch-norm statistics and the given gates closed (M < 0), the others open. */
function residualTestNet(closed: Readonly<Record<string, readonly number[]>>, gateHidden = false): Network {
  const network = new ResidualTestNet(
    { seed: 4, granularityOf: (layer) => (NEURON_LAYERS.has(layer) ? 'neuron' : 'weight'), maskInit: { mean: 0.5, std: 0.1 } },
    gateHidden,
  );
  let draw = 0;
  const wave = (size: number, low: number, high: number) =>
    Float32Array.from({ length: size }, () => low + ((high - low) * (1 + Math.sin(++draw * 12.9898))) / 2);
  for (const p of network.parameters) {
    const size = p.variable.size;
    const layer = p.name.slice(0, p.name.lastIndexOf('.'));
    let values: Float32Array | undefined;
    if (p.role === 'aux') values = Float32Array.from({ length: size }, (_, j) => (closed[layer]?.includes(j) ? -1 : 1));
    else if (p.name.endsWith('.gamma') || p.name.endsWith('.moving_variance')) values = wave(size, 0.5, 1.5);
    else if (p.name.endsWith('.beta') || p.name.endsWith('.moving_mean')) values = wave(size, -0.5, 0.5);
    if (values) p.variable.assign(tf.tensor(values, p.variable.shape));
  }
  return network;
}

/** Logits of the thin (or dense-shaped) model in a tfjs LayersModel, and the plan and model behind them. */
async function thinLogits(network: Network, images: tf.Tensor4D, thin: boolean) {
  const graph = network.graph();
  const weights = await readWeights(network, true);
  const plan = planChannels(graph, weights, thin);
  const model = thinModel(network.name, graph, weights, plan);
  const keras = toLayersModel(model);
  try {
    const logits = tf.tidy(() => (keras.predict(images) as tf.Tensor).dataSync() as Float32Array);
    return { logits, plan, model, graph };
  } finally {
    keras.dispose();
  }
}

describe('thin model: channel plan', () => {
  it('removes closed channels and what they feed, keeps those an addition needs (zeroed), and one channel of a layer whose gates are all closed', async () => {
    const network = residualTestNet({ expand: [1, 4, 5, 11], project: [0, 6], dead: [0, 1, 2, 3] });
    const images = randomImages(3, [9, 9, 3], 1);
    try {
      const reference = maskedLogits(network, images);
      const { logits, plan, model, graph } = await thinLogits(network, images, true);
      assert.ok(relativeError(logits, reference) < 1e-5, `thin logits differ by ${relativeError(logits, reference)}`);
      const kernelShape = (name: string) => {
        const op = model.ops.find((o) => 'name' in o && o.name === name);
        assert.ok(op && 'kernelShape' in op, `no layer ${name}`);
        return [...op.kernelShape];
      };
      assert.deepEqual(kernelShape('expand'), [1, 1, 8, 8], 'expand keeps its 8 open channels');
      assert.deepEqual(kernelShape('depthwise'), [3, 3, 8, 1], 'the depthwise filters of closed channels go with them');
      assert.deepEqual(kernelShape('project'), [1, 1, 8, 8], 'project reads the 8 kept channels and keeps all its outputs for the addition');
      assert.deepEqual(kernelShape('dead'), [1, 1, 8, 1], 'a layer with every gate closed keeps one channel');
      assert.deepEqual(kernelShape('fc'), [1, 3]);
      assert.deepEqual(plan.allClosed, ['dead']);
      const projectGate = graph.ops.find((op) => op.kind === 'gate' && op.layer.name === 'project')!;
      assert.deepEqual([...(plan.zeroed.get(projectGate.kind === 'gate' ? projectGate.input : -1) ?? [])], [0, 6]);
    } finally {
      images.dispose();
      disposeNetwork(network);
    }
  });

  it("gives the same thin shapes when the expansion's gates also close the depthwise outputs (MobileNetV2's way)", async () => {
    const network = residualTestNet({ expand: [1, 4, 5, 11], project: [0, 6] }, true);
    const images = randomImages(2, [9, 9, 3], 3);
    try {
      const reference = maskedLogits(network, images);
      const { logits, model } = await thinLogits(network, images, true);
      assert.ok(relativeError(logits, reference) < 1e-5, `thin logits differ by ${relativeError(logits, reference)}`);
      const depthwise = model.ops.find((op) => 'name' in op && op.name === 'depthwise');
      assert.deepEqual(depthwise && 'kernelShape' in depthwise ? [...depthwise.kernelShape] : [], [3, 3, 8, 1]);
    } finally {
      images.dispose();
      disposeNetwork(network);
    }
  });

  it('at the dense shapes (not thin) computes the same logits with every channel present', async () => {
    const network = residualTestNet({ expand: [0, 2], project: [3], dead: [1] });
    const images = randomImages(2, [9, 9, 3], 2);
    try {
      const reference = maskedLogits(network, images);
      const { logits, plan, graph } = await thinLogits(network, images, false);
      assert.ok(relativeError(logits, reference) < 1e-5, `dense logits differ by ${relativeError(logits, reference)}`);
      plan.kept.forEach((kept, value) => assert.equal(kept.length, graph.shapes[value]!.at(-1)));
    } finally {
      images.dispose();
      disposeNetwork(network);
    }
  });

  it("counts LeNet-5's thin MACs as an independent count from its open gates does", async () => {
    const network = randomlyPrunedNetwork('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 9 });
    try {
      const weights = await readWeights(network, true);
      const open = (layer: string) => weights.layers.get(layer)!.open!.reduce((sum, unit) => sum + unit, 0);
      const [c1, c2, n1] = [open('conv1'), open('conv2'), open('fc1')];
      // conv1 5x5 over 1 channel at 24x24, conv2 5x5 at 8x8, fc1 over the 4x4 map, fc2 to all 10 logits.
      const expected = 25 * c1 * 24 * 24 + 25 * c1 * c2 * 8 * 8 + 16 * c2 * n1 + n1 * 10;
      const graph = network.graph();
      const thin = thinModel('lenet5', graph, weights, planChannels(graph, weights, true));
      assert.ok(c1 < 20 && c2 < 50 && n1 < 500, 'some gates are closed');
      assert.equal(modelSize(thin).flops, expected);
    } finally {
      disposeNetwork(network);
    }
  });
});
