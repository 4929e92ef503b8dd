import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { AUTOPRUNE_GATE_GRAD, type GateAttrs, type Surrogate } from '../../gates.js';
import { sameShape } from './autoprune-gate.js';
import type { KernelArgs } from './kernel-args.js';
import { pointer, simdKernels } from './simd-module.js';

/** simd/kernels.c's numbering of the surrogates. */
const SURROGATES: Readonly<Record<Surrogate, number>> = { linear: 0, relu: 1, 'leaky-relu': 2, softplus: 3 };

/**
 * AutoPruneGateGrad (contract in engine/gates.ts) on wasm: dW and dM, with the sparsity penalty's
 * gradient, in one SIMD pass (the composition: about fifteen passes, and tfjs-backend-wasm's Softplus,
 * Sign and comparisons are scalar loops, 10-40x slower than its SIMD products). Softplus is computed with
 * polynomial exp and log1p, within a few float32 ulps of the composition's; the rest is bit-identical.
 */
function autoPruneGateGrad(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { dy, weights, aux } = args.inputs as { dy: tf.TensorInfo; weights: tf.TensorInfo; aux: tf.TensorInfo };
  const { surrogate, auxGradient, penaltyWeight, nRatio } = args.attrs as unknown as GateAttrs;
  if (!(surrogate in SURROGATES)) throw new Error(`${AUTOPRUNE_GATE_GRAD}: unknown surrogate '${surrogate}'`);
  const shape = sameShape(AUTOPRUNE_GATE_GRAD, { weights, dy, aux });
  const dw = backend.makeOutput(shape, 'float32');
  const dm = backend.makeOutput(shape, 'float32');
  const size = shape.reduce((a, b) => a * b, 1);
  const [pdy, pw, pm] = [pointer(backend, dy), pointer(backend, weights), pointer(backend, aux)];
  simdKernels(backend).gate_backward(
    pdy,
    pw,
    pm,
    pointer(backend, dw),
    pointer(backend, dm),
    size,
    SURROGATES[surrogate],
    auxGradient === 'magnitude' ? 1 : 0,
    penaltyWeight,
    nRatio,
  );
  return [dw, dm];
}

export const autoPruneGateGradConfig: tf.KernelConfig = { kernelName: AUTOPRUNE_GATE_GRAD, backendName: 'wasm', kernelFunc: autoPruneGateGrad };
