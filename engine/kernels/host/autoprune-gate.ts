import type * as tf from '@tensorflow/tfjs';
import { AUTOPRUNE_GATE, AUTOPRUNE_GATE_GRAD, type GateAttrs } from '../../gates.js';
import { gateBackward, gateForward } from './gate-math.js';
import { cpuMemory, type HostMemory } from './memory.js';

/**
 * AutoPruneGate and AutoPruneGateGrad (their contract is in engine/gates.ts) for the cpu backend: one
 * loop over the weights each, in place of the composition's chain of elementwise ops (2-3x faster there).
 * Not for wasm: its SIMD elementwise ops beat a JavaScript loop over its heap (a fused gate gradient over
 * LeNet-300-100's first layer: 26 ms as a loop, 9 ms composed), so wasm composes the gate.
 */

type KernelArgs = Parameters<tf.KernelFunc>[0];

function checkFloat(name: string, ...infos: tf.TensorInfo[]): void {
  for (const info of infos) if (info.dtype !== 'float32') throw new Error(`${name} takes float32 tensors, got ${info.dtype}`);
}

function gate(memory: (backend: object) => HostMemory) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
    const { weights, aux } = inputs as { weights: tf.TensorInfo; aux: tf.TensorInfo };
    checkFloat(AUTOPRUNE_GATE, weights, aux);
    const host = memory(backend);
    const [out] = host.alloc([weights.shape]) as [tf.TensorInfo];
    gateForward(host.view(weights), host.view(aux), host.view(out));
    return out;
  };
}

function gateGrad(memory: (backend: object) => HostMemory) {
  return ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
    const { dy, weights, aux } = inputs as { dy: tf.TensorInfo; weights: tf.TensorInfo; aux: tf.TensorInfo };
    checkFloat(AUTOPRUNE_GATE_GRAD, dy, weights, aux);
    const host = memory(backend);
    const [dWeights, dAux] = host.alloc([weights.shape, aux.shape]) as [tf.TensorInfo, tf.TensorInfo];
    gateBackward(host.view(dy), host.view(weights), host.view(aux), attrs as unknown as GateAttrs, host.view(dWeights), host.view(dAux));
    return [dWeights, dAux];
  };
}

export const CPU_GATE_KERNELS: readonly tf.KernelConfig[] = [
  { kernelName: AUTOPRUNE_GATE, backendName: 'cpu', kernelFunc: gate(cpuMemory) },
  { kernelName: AUTOPRUNE_GATE_GRAD, backendName: 'cpu', kernelFunc: gateGrad(cpuMemory) },
];
