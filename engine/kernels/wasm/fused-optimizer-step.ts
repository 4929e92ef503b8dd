import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { FUSED_OPTIMIZER_STEP, type FusedOptimizerStepAttrs, slotCount } from '../../fused-optimizer-step.js';
import { sameShape } from './autoprune-gate.js';
import type { KernelArgs } from './kernel-args.js';
import { pointer, simdKernels } from './simd-module.js';

/**
 * AutoPruneFusedOptimizerStep (contract in engine/fused-optimizer-step.ts) on wasm: each parameter's
 * whole update (gate, L1/L2, the rule, the step) in one SIMD pass over the backend's memory, in place of
 * ten to eighteen elementwise ops; bit-identical to the composition (simd/kernels.c). No flat buffers:
 * the kernel takes each tensor where it is.
 */
function fusedOptimizerStep(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const inputs = args.inputs as Record<string, tf.TensorInfo>;
  const { spec, count, gated, decayed, decay } = args.attrs as unknown as FusedOptimizerStepAttrs;
  const input = (name: string) => {
    const info = inputs[name];
    if (info === undefined) throw new Error(`${FUSED_OPTIMIZER_STEP}: input ${name} is missing`);
    return info;
  };
  const slots = slotCount(spec);
  // Copied out before any allocation: an allocation may grow the wasm memory, which detaches older views.
  const scalars = Array.from(backend.typedArrayFromHeap(input('scalars')) as Float32Array);
  const kernels = simdKernels(backend);
  const decays = decay.l1 !== 0 || decay.l2 !== 0;
  const parameters: tf.TensorInfo[] = [];
  const slotOutputs: tf.TensorInfo[][] = Array.from({ length: slots }, () => []);
  for (let i = 0; i < count; i++) {
    const named: Record<string, tf.TensorInfo> = { [`param${i}`]: input(`param${i}`), [`grad${i}`]: input(`grad${i}`) };
    for (let j = 0; j < slots; j++) named[`slot${j}_${i}`] = input(`slot${j}_${i}`);
    if (gated[i]) named[`gate${i}`] = input(`gate${i}`);
    const shape = sameShape(FUSED_OPTIMIZER_STEP, named);
    const size = shape.reduce((a, b) => a * b, 1);
    const p = backend.makeOutput(shape, 'float32');
    const outs = Array.from({ length: slots }, () => backend.makeOutput(shape, 'float32'));
    parameters.push(p);
    outs.forEach((out, j) => slotOutputs[j]!.push(out));
    const at = (name: string) => pointer(backend, input(name));
    const gate = gated[i] ? at(`gate${i}`) : 0;
    const decayFlag = decayed[i] && decays ? 1 : 0;
    if (spec.type === 'adam') {
      const [m, v] = [at(`slot0_${i}`), at(`slot1_${i}`)];
      const [mOut, vOut] = outs.map((out) => pointer(backend, out)) as [number, number];
      const f = Math.fround;
      kernels.adam_update(
        at(`param${i}`),
        at(`grad${i}`),
        m,
        v,
        gate,
        pointer(backend, p),
        mOut,
        vOut,
        size,
        spec.beta1,
        f(1 - spec.beta1),
        spec.beta2,
        f(1 - spec.beta2),
        scalars[0]!,
        scalars[1]!,
        decayFlag,
        decay.l1,
        decay.l2,
      );
    } else {
      const buffer = slots > 0 ? at(`slot0_${i}`) : 0;
      const bufferOut = slots > 0 ? pointer(backend, outs[0]!) : 0;
      kernels.sgd_update(
        at(`param${i}`),
        at(`grad${i}`),
        buffer,
        gate,
        pointer(backend, p),
        bufferOut,
        size,
        spec.momentum,
        spec.nesterov ? 1 : 0,
        scalars[0]!,
        decayFlag,
        decay.l1,
        decay.l2,
      );
    }
  }
  return [...parameters, ...slotOutputs.flat()];
}

export const fusedOptimizerStepConfig: tf.KernelConfig = { kernelName: FUSED_OPTIMIZER_STEP, backendName: 'wasm', kernelFunc: fusedOptimizerStep };
