import type * as tf from '@tensorflow/tfjs';
import { ADAM_UPDATE, type AdamAttrs } from '../../optimizers.js';
import { cpuMemory, type HostMemory } from './memory.js';

/**
 * AutoPruneAdam (its contract is in engine/optimizers.ts) for the cpu backend: the whole update of one
 * parameter in one loop, in place of eleven elementwise ops (8x faster there). Not for wasm, whose SIMD
 * ops beat a JavaScript loop over its heap (LeNet-300-100's first layer: 2.5 ms as a loop, 1.1 ms composed). Each value is rounded to float32 where
 * the composition's ops round it, and the constants as tfjs makes them float32 scalars, so that on cpu the
 * bits are the composition's.
 */

type KernelArgs = Parameters<tf.KernelFunc>[0];

function adam(memory: (backend: object) => HostMemory) {
  return ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
    const { parameter, gradient, m, v, mask } = inputs as Record<'parameter' | 'gradient' | 'm' | 'v', tf.TensorInfo> & { mask?: tf.TensorInfo };
    for (const info of [parameter, gradient, m, v, ...(mask ? [mask] : [])])
      if (info.dtype !== 'float32') throw new Error(`${ADAM_UPDATE} takes float32 tensors, got ${info.dtype}`);
    const { beta1, beta2, stepSize, epsilonHat } = attrs as unknown as AdamAttrs;
    const host = memory(backend);
    const outputs = host.alloc([parameter.shape, m.shape, v.shape]) as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    const [p, g, m0, v0] = [host.view(parameter), host.view(gradient), host.view(m), host.view(v)];
    const keep = mask ? host.view(mask) : undefined;
    const [p1, m1, v1] = outputs.map((o) => host.view(o)) as [Float32Array, Float32Array, Float32Array];
    const f = Math.fround;
    const [b1, b2, c1, c2, size, eps] = [f(beta1), f(beta2), f(1 - beta1), f(1 - beta2), f(stepSize), f(epsilonHat)];
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]!;
      const mi = f(f(m0[i]! * b1) + f(gi * c1));
      const vi = f(f(v0[i]! * b2) + f(f(gi * gi) * c2));
      m1[i] = mi;
      v1[i] = vi;
      let delta = f(f(mi * size) / f(f(Math.sqrt(vi)) + eps));
      if (keep) delta = f(delta * keep[i]!);
      p1[i] = f(p[i]! - delta);
    }
    return outputs;
  };
}

export const CPU_ADAM_KERNEL: tf.KernelConfig = { kernelName: ADAM_UPDATE, backendName: 'cpu', kernelFunc: adam(cpuMemory) };
