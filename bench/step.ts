import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { type BackendName, initBackend } from '../engine/backend.js';
import { buildNetwork, type ModelName } from '../engine/models/index.js';
import { disposeNetwork } from '../engine/network.js';
import { createOptimizer } from '../engine/optimizers.js';
import { AutoPruneTrainer, type Batch, disposeGradients } from '../engine/trainer.js';
import { python, runAnchor } from './anchors.js';

/**
 * npm run bench:step [-- --backend NAME ...] — one training step per backend (default: every one that loads) for LeNet-300-100 (batch 128), LeNet-5 (batch 64),
 * ResNet-50 and MobileNetV2 (batch 8 of 64x64 images, 1000 classes), beside PyTorch CPU on the same machine
 * in the same run (../shared/anchors/torch_cpu_ref.py for the LeNets, bench/torch_imagenet_step.py with
 * torchvision's networks for the others).
 * Two figures per net: a plain dense SGD step (what the PyTorch anchor times) and a full AutoPrune
 * iteration (W step and M step, gates and both Adam updates).
 */

const IMAGENET_BATCH = 8;
const IMAGENET_SIZE = 64;

const NETS: readonly { model: ModelName; batch: number; inputShape?: [number, number, number] }[] = [
  { model: 'lenet300', batch: 128 },
  { model: 'lenet5', batch: 64 },
  { model: 'resnet50', batch: IMAGENET_BATCH, inputShape: [IMAGENET_SIZE, IMAGENET_SIZE, 3] },
  { model: 'mobilenetv2', batch: IMAGENET_BATCH, inputShape: [IMAGENET_SIZE, IMAGENET_SIZE, 3] },
];

/**
 * Why a net is not measured on a backend: cpu takes minutes a step on the ImageNet nets, and ResNet-50's
 * parameters with the gates' and Adam's state overflow the wasm heap (the module aborts).
 */
function notMeasured(backend: string, model: ModelName): string | undefined {
  if (backend === 'cpu' && (model === 'resnet50' || model === 'mobilenetv2')) return 'minutes a step';
  if (backend === 'wasm' && model === 'resnet50') return 'exceeds the wasm heap';
  return undefined;
}

const ALL_BACKENDS: BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];
const chosen = parseArgs({ options: { backend: { type: 'string', multiple: true } } }).values.backend;
const BACKENDS = (chosen ?? ALL_BACKENDS) as BackendName[];
const unknown = BACKENDS.filter((name) => !ALL_BACKENDS.includes(name));
if (unknown.length > 0) throw new Error(`unknown --backend ${unknown.join(', ')}; expected some of ${ALL_BACKENDS.join(', ')}`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timeSteps(step: () => void, budgetMs: number, maxSteps: number): number {
  step();
  step(); // warm-up: kernel compilation and first allocations
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxSteps && (times.length < 3 || performance.now() - start < budgetMs)) {
    const t = performance.now();
    step();
    times.push(performance.now() - t);
  }
  return median(times);
}

async function measure(backend: string): Promise<Map<string, { dense: number; autoprune: number }>> {
  const results = new Map<string, { dense: number; autoprune: number }>();
  for (const { model, batch, inputShape } of NETS) {
    const skipped = notMeasured(backend, model);
    if (skipped) {
      console.log(`${backend} ${model}: not measured (${skipped})`);
      continue;
    }
    const network = buildNetwork(model, { seed: 1, inputShape, granularityOf: () => 'weight', maskInit: { mean: 0.5, std: 0.01 } });
    const trainer = new AutoPruneTrainer(network, {
      surrogate: 'softplus',
      auxGradient: 'sign',
      mu: { conv: 0.2, fc: 0.4 },
      nRatio: 1e-3,
      closedWeights: 'frozen',
    });
    const data: Batch = tf.tidy(() => ({
      images: tf.randomNormal([batch, ...network.inputShape], 0, 1, 'float32', 1) as tf.Tensor4D,
      labels: tf.oneHot(tf.randomUniformInt([batch], 0, network.numClasses, 2), network.numClasses) as tf.Tensor2D,
      size: batch,
    }));
    const sgd = createOptimizer({ type: 'sgd', momentum: 0, nesterov: false });
    const adamW = createOptimizer({ type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
    const adamM = createOptimizer({ type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
    // Seconds a step: the two warm-up steps and three timed ones.
    const slow = (backend === 'cpu' && model === 'lenet5') || (backend !== 'tensorflow' && inputShape !== undefined);
    const budget = slow ? 1 : 3000;
    const maxSteps = slow ? 3 : 50;
    const dense = timeSteps(
      () => {
        const g = trainer.weightGradients(data, 'off', { l1: 0, l2: 0 }, 0);
        trainer.applyWeightUpdate(sgd, g.gradients, 0.01, 'off');
        disposeGradients(g.gradients);
      },
      budget,
      maxSteps,
    );
    const autoprune = timeSteps(
      () => {
        const w = trainer.weightGradients(data, 'frozen', { l1: 1e-5, l2: 5e-5 }, 0);
        trainer.applyWeightUpdate(adamW, w.gradients, 1e-3, 'frozen');
        disposeGradients(w.gradients);
        const m = trainer.auxGradients(data, 0);
        trainer.applyAuxUpdate(adamM, m.gradients, 0.1);
        disposeGradients(m.gradients);
      },
      budget,
      maxSteps,
    );
    results.set(model, { dense, autoprune });
    // As it goes, so that a backend that fails later does not take the figures with it.
    console.log(`${backend} ${model}: dense ${dense.toFixed(1)} ms, AutoPrune ${autoprune.toFixed(1)} ms`);
    for (const o of [sgd, adamW, adamM]) o.dispose();
    data.images.dispose();
    data.labels.dispose();
    disposeNetwork(network);
  }
  return results;
}

async function main(): Promise<void> {
  const rows: string[][] = [];
  const torch = runAnchor('torch_cpu_ref.py', ['2'], 600_000);
  const torchMs = new Map<string, number>();
  const imagenetScript = fileURLToPath(new URL('../../bench/torch_imagenet_step.py', import.meta.url));
  const torchImagenet = spawnSync(python(), [imagenetScript, '2', String(IMAGENET_BATCH), String(IMAGENET_SIZE)], { encoding: 'utf8', timeout: 1_200_000 });
  for (const [name, result, reason] of [
    ['torch_cpu_ref.py', torch.ok ? torch.stdout : undefined, torch.ok ? '' : torch.reason],
    ['torch_imagenet_step.py', torchImagenet.status === 0 ? torchImagenet.stdout : undefined, torchImagenet.stderr?.trim().split('\n').pop()],
  ] as const) {
    if (result === undefined) console.log(`PyTorch CPU anchor ${name} not run: ${reason}`);
    for (const match of (result ?? '').matchAll(/(\w+) batch\d+ step ([\d.]+) ms/g)) torchMs.set(match[1]!, Number(match[2]));
  }
  for (const backend of BACKENDS) {
    let active: string;
    try {
      active = await initBackend(backend, () => {});
    } catch (error) {
      console.log(`${backend}: not available (${(error as Error).message.split('\n')[0]})`);
      continue;
    }
    if (active !== backend) continue;
    for (const [model, r] of await measure(backend)) {
      const anchor = torchMs.get(model);
      rows.push([
        backend,
        model,
        r.dense.toFixed(1),
        r.autoprune.toFixed(1),
        anchor === undefined ? '-' : anchor.toFixed(1),
        anchor === undefined ? '-' : (r.dense / anchor).toFixed(2),
      ]);
    }
  }
  const header = ['backend', 'net', 'dense SGD step ms', 'AutoPrune iteration ms', 'PyTorch CPU step ms', 'dense / PyTorch'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  console.log(
    `\nLeNet-300-100 at batch 128, LeNet-5 at batch 64, ResNet-50 and MobileNetV2 at batch ${IMAGENET_BATCH} of ${IMAGENET_SIZE}x${IMAGENET_SIZE}; medians. An AutoPrune iteration is one W step and one M step (Adam, gates, L1/L2, R+/R-).`,
  );
}

await main();
