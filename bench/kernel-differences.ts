import * as tf from '@tensorflow/tfjs';
import { type BackendName, initBackend } from '../engine/backend.js';
import { type TrainStepResult, trainStep } from '../test/helpers/train-steps.js';

/**
 * npm run bench:kernels — where the backends' kernels differ in ways that matter to training (no timings):
 * which of tied maxima maxPool's gradient goes to, avgPool's gradient at padded borders, how far a float32
 * sum of 2^20 values lands from the exact one (the accumulation order), and on tensorflow how many
 * parameters of a LeNet-5 AutoPrune iteration change with the intra-op thread count and with oneDNN off.
 * docs/backends.md records the figures.
 */

const BACKENDS: BackendName[] = ['cpu', 'wasm', 'tensorflow'];

/** Gradient of a 2x2 stride-2 maxPool over windows of tied values (zeros after a ReLU, equal negatives). */
function maxPoolTies(): string {
  const x = tf.tensor4d([0, 0, -1, -1, 0, 0, -1, -1, 2, 2, 3, 1, 2, 2, 3, 3], [1, 4, 4, 1]);
  const dx = tf.grad((input: tf.Tensor) => tf.maxPool(input as tf.Tensor4D, 2, 2, 'valid'))(x, tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]));
  const values = Array.from(dx.dataSync());
  // Each window's gradient lands on one of its cells: name the one, in window-reading order.
  const windows = [0, 2, 8, 10].map((corner) => [corner, corner + 1, corner + 4, corner + 5].findIndex((cell) => values[cell] !== 0));
  return windows.every((w) => w === 0) ? 'first' : `cells ${windows.join(',')}`;
}

/** A corner input's gradient of a 3x3 stride-1 same-padded avgPool on a 3x3 image: 25/36 ≈ 0.694 exact, 4/9 ≈ 0.444 with padding counted. */
function avgPoolCorner(): string {
  const dx = tf.grad((x: tf.Tensor) => tf.avgPool(x as tf.Tensor4D, 3, 1, 'same'))(tf.ones([1, 3, 3, 1]), tf.ones([1, 3, 3, 1]));
  const corner = dx.dataSync()[0]!;
  return `${corner.toFixed(4)} (${Math.abs(corner - 25 / 36) < 1e-5 ? 'exact' : Math.abs(corner - 4 / 9) < 1e-5 ? 'padding counted' : 'neither'})`;
}

/** |float32 sum - float64 sum| / |float64 sum| for 2^20 values of mixed sign and size. */
function sumError(): string {
  const values = Float32Array.from({ length: 1 << 20 }, (_, i) => Math.sin(i) * 1000 + 0.001 * i);
  const exact = values.reduce((sum, v) => sum + v, 0);
  const sum = tf.sum(tf.tensor1d(values)).dataSync()[0]!;
  return (Math.abs(sum - exact) / Math.abs(exact)).toExponential(1);
}

function stepOnTensorflow(env: Record<string, string>): Promise<TrainStepResult> {
  return trainStep('tensorflow', 'lenet5', env);
}

function differingParameters(a: TrainStepResult, b: TrainStepResult): string {
  let differing = 0;
  let total = 0;
  let largest = 0;
  for (const [name, values] of Object.entries(a.after)) {
    const other = b.after[name]!;
    total += values.length;
    values.forEach((v, i) => {
      if (v !== other[i]) differing++;
      largest = Math.max(largest, Math.abs(v - other[i]!));
    });
  }
  return `${differing} of ${total} differ, by at most ${largest.toExponential(1)}`;
}

const rows: string[][] = [];
for (const backend of BACKENDS) {
  try {
    await initBackend(backend, () => {});
  } catch (error) {
    console.log(`${backend}: not available (${(error as Error).message})`);
    continue;
  }
  rows.push([backend, maxPoolTies(), avgPoolCorner(), sumError()]);
}
const header = ['backend', 'maxPool ties go to', 'avgPool same, corner gradient', 'float32 sum of 2^20, relative error'];
const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));

if (rows.some(([backend]) => backend === 'tensorflow')) {
  const reference = await stepOnTensorflow({ TF_NUM_INTRAOP_THREADS: '2', TF_NUM_INTEROP_THREADS: '2' });
  const again = await stepOnTensorflow({ TF_NUM_INTRAOP_THREADS: '2', TF_NUM_INTEROP_THREADS: '2' });
  const oneThread = await stepOnTensorflow({ TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '2' });
  const noOneDnn = await stepOnTensorflow({ TF_NUM_INTRAOP_THREADS: '2', TF_NUM_INTEROP_THREADS: '2', TF_ENABLE_ONEDNN_OPTS: '0' });
  console.log('\nLeNet-5, one AutoPrune iteration on tensorflow (test/helpers/train-step.ts), parameters after it against 2 intra-op threads:');
  console.log(`  the same run again:        ${differingParameters(reference, again)}`);
  console.log(`  1 intra-op thread:          ${differingParameters(reference, oneThread)}`);
  console.log(`  TF_ENABLE_ONEDNN_OPTS=0:    ${differingParameters(reference, noOneDnn)}`);
}
