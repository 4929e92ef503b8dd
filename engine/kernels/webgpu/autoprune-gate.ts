import type * as tf from '@tensorflow/tfjs';
import { AUTOPRUNE_GATE } from '../../gates.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * AutoPruneGate on webgpu: the gated weight W ⊙ h(M), h(m) = 1[m ≥ 0], in one pass over W and M (the
 * composition takes three dispatches: greaterEqual, cast, mul). The op's contract is engine/gates.ts's;
 * the forward does not use its attributes (GateAttrs), which are there for its gradient.
 */

const GATE: ShaderProgram = {
  name: AUTOPRUNE_GATE,
  outputs: ['gated'],
  inputs: ['weights', 'aux'],
  uniforms: [['size', 'u32']],
  body: elementwiseShader(`  gated[i] = weights[i] * select(0.0, 1.0, aux[i] >= 0.0); // a product, as the composition: -0 stays -0`),
};

function autoPruneGate(args: KernelArgs): tf.TensorInfo {
  const { weights, aux } = args.inputs as { weights: tf.TensorInfo; aux: tf.TensorInfo };
  if (weights.shape.join(',') !== aux.shape.join(',')) throw new Error(`${AUTOPRUNE_GATE}: weights [${weights.shape}] and aux [${aux.shape}] differ in shape`);
  const dispatcher = dispatcherFor(args.backend);
  const size = weights.shape.reduce((a, b) => a * b, 1);
  const gated = dispatcher.allocate([...weights.shape]);
  if (size > 0) dispatcher.dispatch(GATE, elementwiseGrid(size), [gated], [weights, aux], [size]);
  return gated;
}

export const autoPruneGateConfig: tf.KernelConfig = { kernelName: AUTOPRUNE_GATE, backendName: 'webgpu', kernelFunc: autoPruneGate };
