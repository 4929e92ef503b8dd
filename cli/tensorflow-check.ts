/**
 * `node tensorflow-check.js <record.json>`: loads a freshly built tfjs-node addon the way the tensorflow
 * backend does and computes a convolution whose answer is known, in a process of its own (an addon that
 * crashes on load must not take `autoprune setup` with it). Prints `{ tensorflowVersion, output }` as JSON;
 * exits 1 with the reason on stderr when the addon does not load or computes wrongly.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { type BuiltAddon, registerBuiltAddon } from '../engine/tensorflow-addon.js';

/**
 * 1..16 in a 4x4 image, filter [[1, 2], [3, 4]], stride 1, valid: out(i, j) = x(i, j) + 2 x(i, j+1) +
 * 3 x(i+1, j) + 4 x(i+1, j+1) = 44 at (0, 0), 10 more a column to the right and 40 more a row down.
 */
const EXPECTED = [44, 54, 64, 84, 94, 104, 124, 134, 144];

try {
  const addon = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as BuiltAddon;
  const { tensorflowVersion } = registerBuiltAddon(addon, {});
  if (!(await tf.setBackend('tensorflow'))) throw new Error('the tensorflow backend failed to initialise');
  const image = tf.tensor4d(
    Array.from({ length: 16 }, (_, i) => i + 1),
    [1, 4, 4, 1],
  );
  const filter = tf.tensor4d([1, 2, 3, 4], [2, 2, 1, 1]);
  const output = Array.from(tf.conv2d(image, filter, 1, 'valid').dataSync());
  if (output.join() !== EXPECTED.join()) throw new Error(`a known convolution came out wrong: [${output}] instead of [${EXPECTED}]`);
  process.stdout.write(`${JSON.stringify({ tensorflowVersion, output })}\n`);
} catch (error) {
  process.stderr.write(`${(error as Error).message ?? String(error)}\n`);
  process.exitCode = 1;
}
