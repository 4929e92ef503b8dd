import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { CLANG_FLAGS, compileKernels, findClang, sourceHash } from '../../deploy/wasm-kernels/build.js';
import { initBackend } from '../../engine/backend.js';
import { FUSED_OPTIMIZER_STEP } from '../../engine/fused-optimizer-step.js';
import { AUTOPRUNE_GATE, AUTOPRUNE_GATE_GRAD, type AuxGradientRule, composedGatedWeight, gatedWeight, type Surrogate } from '../../engine/gates.js';
import { KERNELS_SOURCE_SHA256, KERNELS_WASM_BASE64 } from '../../engine/kernels/wasm/simd/kernels-module.js';
import { backendMemory } from '../../engine/kernels/wasm/simd-module.js';
import type { Parameter } from '../../engine/layers.js';
import { createOptimizer } from '../../engine/optimizers.js';
import { assertClose, type Inputs, randomInputs, valuesOn } from '../helpers/backend-compare.js';
import { OPTIMIZER_SPECS, optimizerSteps } from '../helpers/optimizer-steps.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * autoprune's wasm SIMD kernels (engine/kernels/wasm/simd/): the committed module is kernels.c's build and
 * keeps to the backend's memory; through the public ops (gatedWeight, the optimizers) on wasm, the gate and
 * the updates are bit-identical to the composition on cpu and the gate's gradient within float32 rounding.
 */

/** The sections of a wasm module, by id, in order. */
function sections(bytes: Buffer): { id: number; body: Buffer }[] {
  const found: { id: number; body: Buffer }[] = [];
  let at = 8;
  const leb = () => {
    let value = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = bytes[at++]!;
      value |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    return value;
  };
  while (at < bytes.length) {
    const id = bytes[at++]!;
    const length = leb();
    found.push({ id, body: bytes.subarray(at, at + length) });
    at += length;
  }
  return found;
}

describe('wasm SIMD kernels', () => {
  const module = Buffer.from(KERNELS_WASM_BASE64, 'base64');

  it('the committed module was built from kernels.c as it is', function () {
    assert.equal(KERNELS_SOURCE_SHA256, sourceHash(), 'kernels.c changed since `npm run build:wasm-kernels`');
    const clang = findClang();
    if (clang === undefined) skipBecause(this, `no clang to rebuild with (${CLANG_FLAGS.join(' ')}); the source hash matched`);
    assert.ok(compileKernels(clang).equals(module), 'a rebuild of kernels.c gives another module: run npm run build:wasm-kernels');
  });

  it('imports the memory it is given and has no data of its own, and its stack is empty at address 0', () => {
    const compiled = new WebAssembly.Module(module);
    assert.deepEqual(WebAssembly.Module.imports(compiled), [{ module: 'env', name: 'memory', kind: 'memory' }]);
    const ids = sections(module).map((s) => s.id);
    assert.ok(!ids.includes(11), 'a data section would be written into the backend memory at instantiation');
    // One global, the stack pointer: mutable i32 initialised to 0 (zero-size stack at address 0: any use traps).
    const globals = sections(module).find((s) => s.id === 6);
    assert.deepEqual([...(globals?.body ?? [])], [1, 0x7f, 1, 0x41, 0, 0x0b]);
  });

  describe('on the wasm backend, against the composition on cpu', () => {
    before(async () => {
      await initBackend('wasm', () => {});
      for (const kernel of [AUTOPRUNE_GATE, AUTOPRUNE_GATE_GRAD, FUSED_OPTIMIZER_STEP]) assert.ok(tf.getKernel(kernel, 'wasm'), `${kernel} on wasm`);
    });
    after(async () => {
      await initBackend('cpu', () => {});
    });

    const gateInputs = (shape: number[], seed: number): Inputs => {
      const inputs = randomInputs({ dy: shape, weights: shape, aux: shape }, seed);
      // Zeros in W and M, W below the sign rule's threshold, M far out on both sides and near softplus's thresholds.
      inputs.weights!.values.set([0, -0, 1e-16, -3e-16], 0);
      inputs.aux!.values.set([0, -0, -20, 20, -14, 14, -13.9, 13.9, -100, 88], 4);
      return inputs;
    };

    for (const shape of [[5, 5, 3, 7], [17], [31, 17]]) {
      it(`AutoPruneGate is the composition's W · 1[M ≥ 0] to the bit ([${shape}])`, async () => {
        const inputs = gateInputs(shape, shape.length);
        const f = ({ weights, aux }: Record<string, tf.Tensor>) => gatedWeight(weights!, aux!, 'linear', 'sign');
        const wasm = await valuesOn('wasm', inputs, f);
        const cpu = await valuesOn('cpu', inputs, ({ weights, aux }) => composedGatedWeight(weights!, aux!, 'linear', 'sign'));
        assert.deepEqual(wasm, cpu);
      });
    }

    const surrogates: Surrogate[] = ['linear', 'relu', 'leaky-relu', 'softplus'];
    const rules: AuxGradientRule[] = ['sign', 'magnitude'];
    for (const surrogate of surrogates) {
      for (const rule of rules) {
        for (const penalty of [undefined, { weight: 0.37, nRatio: 1e-3 }, { weight: 2, nRatio: 1 }]) {
          it(`AutoPruneGateGrad (${surrogate}, ${rule}, penalty ${JSON.stringify(penalty)}): the composition's dW to the bit, dM within float32 rounding`, async () => {
            const inputs = gateInputs([37, 11], surrogates.indexOf(surrogate) * 10 + rules.indexOf(rule));
            const grads =
              (gate: typeof gatedWeight) =>
              ({ dy, weights, aux }: Record<string, tf.Tensor>) =>
                tf.grads((w: tf.Tensor, m: tf.Tensor) => gate(w, m, surrogate, rule, penalty))([weights!, aux!], dy!);
            const [dwWasm, dmWasm] = await valuesOn('wasm', inputs, grads(gatedWeight));
            const [dwCpu, dmCpu] = await valuesOn('cpu', inputs, grads(composedGatedWeight));
            assert.deepEqual(dwWasm, dwCpu);
            assertClose([dmWasm!], [dmCpu!], 2e-6, `dM (${surrogate}, ${rule})`);
          });
        }
      }
    }

    it('reads its step scalars before the outputs it allocates grow the wasm memory', async () => {
      assert.ok(await tf.setBackend('wasm'));
      const memory = backendMemory(tf.backend() as BackendWasm)!;
      // Parameter, gradient and slots as large as the memory was: their outputs cannot fit without growing it.
      const size = memory.buffer.byteLength / 4;
      const run = async (backend: string) => {
        assert.ok(await tf.setBackend(backend));
        const parameter: Parameter = { name: 'p', role: 'weight', decayed: false, variable: tf.variable(tf.fill([size], 0.5)) };
        const gradient = tf.fill([size], 0.25);
        const optimizer = createOptimizer({ type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
        optimizer.apply([parameter], new Map([['p', gradient]]), 0.01);
        const before = backend === 'wasm' ? memory.buffer.byteLength : 0;
        optimizer.apply([parameter], new Map([['p', gradient]]), 0.01);
        const grew = backend === 'wasm' && memory.buffer.byteLength > before;
        const values = Array.from(((await parameter.variable.data()) as Float32Array).subarray(0, 8));
        optimizer.dispose();
        tf.dispose([parameter.variable, gradient]);
        return { values, grew };
      };
      const wasm = await run('wasm');
      assert.ok(wasm.grew, 'the second update grew the wasm memory');
      assert.deepEqual(wasm.values, (await run('cpu')).values);
    });

    for (const spec of OPTIMIZER_SPECS) {
      it(`AutoPruneFusedOptimizerStep, ${JSON.stringify(spec)} with gates and L1/L2: the composition's parameters and slots to the bit`, async () => {
        const decay = { l1: 1e-2, l2: 0.1 };
        const wasm = await optimizerSteps('wasm', spec, { gated: true, decay });
        const cpu = await optimizerSteps('cpu', spec, { gated: true, decay });
        assert.deepEqual(wasm.values, cpu.values);
      });
    }
  });
});
