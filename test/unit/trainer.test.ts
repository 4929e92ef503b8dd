import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { disposeNetwork, type Network } from '../../engine/network.js';
import { createOptimizer } from '../../engine/optimizers.js';
import { AutoPruneTrainer, type Batch, disposeGradients, type PruneRules } from '../../engine/trainer.js';
import { tinyNetwork } from '../helpers/tiny-network.js';

const rules: PruneRules = { surrogate: 'softplus', auxGradient: 'sign', mu: { conv: 0.2, fc: 0.4 }, nRatio: 1e-3, closedWeights: 'frozen' };
const adam = { type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 } as const;

function randomBatch(seed: number, size = 16): Batch {
  return tf.tidy(() => {
    const images = tf.randomNormal([size, 2, 2, 1], 0, 1, 'float32', seed) as tf.Tensor4D;
    const classes = tf.cast(tf.greater(tf.sum(tf.reshape(images, [size, 4]), 1), 0), 'int32') as tf.Tensor1D;
    return { images, labels: tf.oneHot(classes, 2) as tf.Tensor2D, size };
  });
}

const values = (network: Network, role: 'weight' | 'aux') =>
  new Map(network.parameters.filter((p) => p.role === role).map((p) => [p.name, Array.from(p.variable.dataSync())]));

describe('AutoPrune trainer', () => {
  let network: Network;
  before(async () => {
    await tf.setBackend('cpu');
  });
  beforeEach(() => {
    network = tinyNetwork();
  });
  afterEach(() => disposeNetwork(network));

  it('R⁺ and R⁻ add μ/N · (surrogate(m) − n_ratio · surrogate(−m)) to each gate gradient', () => {
    const batch = randomBatch(1);
    const withPenalty = new AutoPruneTrainer(network, rules).auxGradients(batch, 0);
    const withoutPenalty = new AutoPruneTrainer(network, { ...rules, mu: { conv: 0, fc: 0 } }).auxGradients(batch, 0);
    const groupSize = network.maskedLayers.reduce((n, l) => n + l.mask!.variable.size, 0);
    for (const layer of network.maskedLayers) {
      const mValues = layer.mask!.variable.dataSync();
      const a = withPenalty.gradients.get(layer.mask!.name)!.dataSync();
      const b = withoutPenalty.gradients.get(layer.mask!.name)!.dataSync();
      for (let i = 0; i < mValues.length; i++) {
        const v = mValues[i]!;
        const expected = (0.4 / groupSize) * (Math.log1p(Math.exp(v)) - 1e-3 * Math.log1p(Math.exp(-v)));
        assert.ok(Math.abs(a[i]! - b[i]! - expected) < 1e-6, `${layer.mask!.name}[${i}]: ${a[i]! - b[i]!} vs ${expected}`);
      }
    }
    assert.ok(withPenalty.loss.dataSync()[0]! > withoutPenalty.loss.dataSync()[0]!);
  });

  it('an M step that does not measure the penalty has the same gradients and the cross-entropy alone as its loss', () => {
    const batch = randomBatch(1);
    const trainer = new AutoPruneTrainer(network, rules);
    const measured = trainer.auxGradients(batch, 0);
    const unmeasured = trainer.auxGradients(batch, 0, { measurePenalty: false });
    const crossEntropy = new AutoPruneTrainer(network, { ...rules, mu: { conv: 0, fc: 0 } }).auxGradients(batch, 0);
    for (const [name, g] of measured.gradients) assert.deepEqual(Array.from(unmeasured.gradients.get(name)!.dataSync()), Array.from(g.dataSync()), name);
    assert.equal(unmeasured.loss.dataSync()[0], crossEntropy.loss.dataSync()[0]);
    assert.ok(measured.loss.dataSync()[0]! > unmeasured.loss.dataSync()[0]!);
  });

  it('the W update adds λ1·sgn(W) + λ2·W to kernel gradients only', () => {
    const batch = randomBatch(2);
    const trainer = new AutoPruneTrainer(network, rules);
    const sgd = { type: 'sgd', momentum: 0, nesterov: false } as const;
    const before = values(network, 'weight');
    const updatedWith = (decay: { l1: number; l2: number }) => {
      for (const p of network.parameters.filter((q) => q.role === 'weight')) p.variable.assign(tf.tensor(before.get(p.name)!, p.variable.shape));
      const { gradients } = trainer.weightGradients(batch, 'frozen', 0);
      trainer.applyWeightUpdate(createOptimizer(sgd), gradients, 0.5, 'off', decay);
      disposeGradients(gradients);
      return values(network, 'weight');
    };
    const plain = updatedWith({ l1: 0, l2: 0 });
    const decayed = updatedWith({ l1: 0.01, l2: 0.1 });
    for (const p of network.parameters.filter((q) => q.role === 'weight')) {
      const w = before.get(p.name)!;
      for (let i = 0; i < w.length; i++) {
        const expected = p.decayed ? -0.5 * (0.01 * Math.sign(w[i]!) + 0.1 * w[i]!) : 0;
        assert.ok(Math.abs(decayed.get(p.name)![i]! - plain.get(p.name)![i]! - expected) < 1e-6, `${p.name}[${i}]`);
      }
    }
  });

  it('a W step leaves M unchanged and leaves weights behind closed gates unchanged', () => {
    const fc1 = network.maskedLayers[0]!;
    // Close every other gate of fc1.
    const closed = Array.from(fc1.mask!.variable.dataSync(), (v, i) => (i % 2 === 0 ? -Math.abs(v) : v));
    fc1.mask!.variable.assign(tf.tensor(closed, fc1.mask!.variable.shape));
    const before = values(network, 'weight');
    const masksBefore = values(network, 'aux');
    const trainer = new AutoPruneTrainer(network, rules);
    const optimizer = createOptimizer(adam);
    for (let step = 0; step < 3; step++) {
      const { gradients } = trainer.weightGradients(randomBatch(10 + step), 'frozen', step);
      trainer.applyWeightUpdate(optimizer, gradients, 0.05, 'frozen', { l1: 1e-3, l2: 1e-2 });
      disposeGradients(gradients);
    }
    assert.deepEqual(values(network, 'aux'), masksBefore);
    const after = values(network, 'weight').get('fc1.weight')!;
    const original = before.get('fc1.weight')!;
    for (let i = 0; i < original.length; i++) {
      if (i % 2 === 0) assert.equal(after[i], original[i], `closed weight ${i} moved`);
      else assert.notEqual(after[i], original[i], `open weight ${i} did not train`);
    }
    optimizer.dispose();
  });

  it("with closed weights `decayed`, L1/L2 shrink weights behind closed gates (the first author's rule)", () => {
    const fc1 = network.maskedLayers[0]!;
    fc1.mask!.variable.assign(tf.neg(tf.abs(fc1.mask!.variable)));
    const original = Array.from(fc1.kernel.variable.dataSync());
    const trainer = new AutoPruneTrainer(network, { ...rules, closedWeights: 'decayed' });
    const optimizer = createOptimizer({ type: 'sgd', momentum: 0, nesterov: false });
    const { gradients } = trainer.weightGradients(randomBatch(20), 'frozen', 0);
    trainer.applyWeightUpdate(optimizer, gradients, 0.1, 'frozen', { l1: 0, l2: 0.5 });
    disposeGradients(gradients);
    const after = fc1.kernel.variable.dataSync();
    // Closed gates: no loss gradient, so the step is exactly the L2 shrink w ← w − lr·λ2·w.
    for (let i = 0; i < original.length; i++) assert.ok(Math.abs(after[i]! - original[i]! * (1 - 0.1 * 0.5)) < 1e-6, `weight ${i}`);
    optimizer.dispose();
  });

  it('an M step leaves W unchanged and moves M', () => {
    const before = values(network, 'weight');
    const masksBefore = values(network, 'aux');
    const trainer = new AutoPruneTrainer(network, rules);
    const optimizer = createOptimizer(adam);
    const { gradients } = trainer.auxGradients(randomBatch(3), 0);
    trainer.applyAuxUpdate(optimizer, gradients, 0.1);
    disposeGradients(gradients);
    assert.deepEqual(values(network, 'weight'), before);
    assert.notDeepEqual(values(network, 'aux'), masksBefore);
    optimizer.dispose();
  });

  it('closed gates reopen when the loss needs their weights', () => {
    const fc2 = network.maskedLayers[1]!;
    fc2.mask!.variable.assign(tf.fill(fc2.mask!.variable.shape, -0.05));
    const trainer = new AutoPruneTrainer(network, { ...rules, mu: { conv: 0, fc: 0 } });
    const optimizer = createOptimizer(adam);
    const open = () => Array.from(fc2.mask!.variable.dataSync()).filter((v) => v >= 0).length;
    assert.equal(open(), 0);
    for (let step = 0; step < 20 && open() === 0; step++) {
      const { gradients } = trainer.auxGradients(randomBatch(100 + step, 64), step);
      trainer.applyAuxUpdate(optimizer, gradients, 0.01);
      disposeGradients(gradients);
    }
    assert.ok(open() > 0, 'no gate of fc2 reopened');
    optimizer.dispose();
  });

  it("neuron gates zero a closed unit's output and pass gradient to M", () => {
    disposeNetwork(network);
    network = tinyNetwork({ granularity: 'neuron' });
    const fc1 = network.maskedLayers[0]!;
    assert.deepEqual(fc1.mask!.variable.shape, [3]);
    fc1.mask!.variable.assign(tf.tensor1d([-0.5, 0.5, 0.5]));
    const keep = fc1.keepMask().arraySync() as number[][];
    assert.ok(keep.every((row) => row[0] === 0 && row[1] === 1 && row[2] === 1));
    const { gradients } = new AutoPruneTrainer(network, rules).auxGradients(randomBatch(4), 0);
    assert.equal(gradients.get('fc1.mask')!.shape[0], 3);
    assert.ok(Array.from(gradients.get('fc1.mask')!.dataSync()).every(Number.isFinite));
  });
});

describe('optimizers', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('Adam matches the bias-corrected update of Kingma & Ba', () => {
    const network = tinyNetwork();
    const p = network.parameters[0]!;
    const w0 = Array.from(p.variable.dataSync());
    const optimizer = createOptimizer(adam);
    const g = [0.5, -1, 2, 0.1, -0.3, 0.7, 1, 0, -2, 3, 0.2, -0.1];
    const gradient = tf.tensor(g.slice(0, p.variable.size), p.variable.shape);
    optimizer.apply([p], new Map([[p.name, gradient]]), 0.01);
    optimizer.apply([p], new Map([[p.name, gradient]]), 0.01);
    const w2 = p.variable.dataSync();
    for (let i = 0; i < w0.length; i++) {
      // Two identical gradients: m̂ = g, v̂ = g², so each step moves by lr · g / (|g| + ε).
      const gi = g[i]!;
      const expected = w0[i]! - 2 * 0.01 * (gi / (Math.abs(gi) + 1e-8));
      assert.ok(Math.abs(w2[i]! - expected) < 1e-6, `element ${i}`);
    }
    optimizer.dispose();
    disposeNetwork(network);
  });

  it('SGD with momentum accumulates velocity', () => {
    const network = tinyNetwork();
    const p = network.parameters[0]!;
    const w0 = Array.from(p.variable.dataSync());
    const optimizer = createOptimizer({ type: 'sgd', momentum: 0.9, nesterov: false });
    const gradient = tf.onesLike(p.variable);
    optimizer.apply([p], new Map([[p.name, gradient]]), 0.1);
    optimizer.apply([p], new Map([[p.name, gradient]]), 0.1);
    const w2 = p.variable.dataSync();
    for (let i = 0; i < w0.length; i++) assert.ok(Math.abs(w2[i]! - (w0[i]! - 0.1 * (1 + 1.9))) < 1e-6);
    assert.deepEqual([...optimizer.state().slots.keys()], [`${p.name}/momentum`]);
    optimizer.dispose();
    disposeNetwork(network);
  });
});
