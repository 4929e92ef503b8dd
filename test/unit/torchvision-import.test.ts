import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { importWeights } from '../../cli/import.js';
import { readInitCheckpoint } from '../../coordinator/run-directory.js';
import { ForwardContext } from '../../engine/layers.js';
import { layerGating } from '../../engine/models/channel-gates.js';
import { buildNetwork } from '../../engine/models/index.js';
import type { TorchvisionModel } from '../../engine/models/torchvision.js';
import { disposeNetwork } from '../../engine/network.js';
import { assignParameters } from '../../engine/state.js';
import { validateConfig } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import { encodeSafetensors, type NamedTensor, readSafetensorsFile } from '../../shared/safetensors.js';
import { readWeightsFile } from '../../shared/torch-weights.js';
import { skipBecause } from '../helpers/skip.js';
import { torchvisionMissing, torchvisionReference } from '../helpers/torchvision.js';

/** Side of the reference images (make_reference.py's default): small, and every network takes it. */
const SIZE = 64;

/** A config that names `model` and a dense phase starting from `init`, as a user writes one (neuron gates: small masks). */
function configFor(model: TorchvisionModel, init: string) {
  return validateConfig(
    {
      model: { name: model, granularity: 'neuron' },
      data: { dataset: 'imagenet', dir: '/nowhere', imageSize: SIZE },
      phases: [{ phase: 'dense', steps: 0, init, weights: { lr: 1e-5 } }],
    },
    'test config',
  );
}

/**
 * Logits of the imported checkpoint for the reference images, through the path a run takes: the checkpoint
 * read as a dense phase's `init`, loaded into the network the config builds (M absent, gates off in eval).
 */
async function importedLogits(model: TorchvisionModel, runDir: string, input: NamedTensor): Promise<Float32Array> {
  const config = configFor(model, runDir);
  const checkpoint = await readInitCheckpoint(config, 0, runDir);
  const network = buildNetwork(model, {
    seed: 1,
    inputShape: [SIZE, SIZE, 3],
    granularityOf: layerGating(model, config.model.granularity, config.model.layers),
    maskInit: config.prune.maskInit,
  });
  try {
    assignParameters(network.parameters, checkpoint.parameters, runDir, ['aux']);
    return tf.tidy(() => {
      const nchw = tf.tensor4d(input.data as Float32Array, input.shape as [number, number, number, number]);
      const logits = network.apply(tf.transpose(nchw, [0, 2, 3, 1]), new ForwardContext(false, 'off', 'softplus', 'sign', 0));
      return Float32Array.from(logits.dataSync());
    });
  } finally {
    disposeNetwork(network);
  }
}

/** Every logit within 1e-4 of the reference's largest magnitude (relative to the logits' scale). */
function assertClose(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const worst = actual.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i]!)), 0);
  assert.ok(worst <= 1e-4 * scale, `${what}: largest difference ${worst} against logits up to ${scale}`);
}

async function rejectsNaming(promise: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof InputError, String(error));
    for (const part of parts) assert.ok(error.message.includes(part), `"${error.message}" should name ${part}`);
    return true;
  });
}

describe('autoprune import (torchvision weights)', function () {
  this.timeout(300_000);
  let reference: string;
  let scratch: string;

  before(async function () {
    const missing = await torchvisionMissing();
    if (missing) skipBecause(this, missing);
    reference = await torchvisionReference();
    scratch = mkdtempSync(join(tmpdir(), 'autoprune-import-'));
    await tf.setBackend('cpu');
  });

  after(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  for (const model of ['resnet50', 'mobilenetv2', 'alexnet'] as const) {
    it(`${model}: the imported checkpoint gives torchvision's eval logits`, async () => {
      const out = join(scratch, `${model}-safetensors`);
      const summary = await importWeights(join(reference, `${model}.safetensors`), model, out);
      assert.equal(summary.numClasses, 1000);
      const { tensors } = await readSafetensorsFile(join(reference, `${model}.reference.safetensors`));
      const logits = await importedLogits(model, out, tensors.get('input')!);
      assertClose(logits, tensors.get('logits')!.data as Float32Array, model);
    });
  }

  it('reads a torch.save .pth to the same checkpoint as its safetensors', async () => {
    const fromPth = join(scratch, 'mobilenetv2-pth');
    const summary = await importWeights(join(reference, 'mobilenetv2.pth'), 'mobilenetv2', fromPth);
    assert.equal(summary.format, 'pth');
    const config = configFor('mobilenetv2', fromPth);
    const pth = (await readInitCheckpoint(config, 0, fromPth)).parameters;
    const safetensors = (await readInitCheckpoint(config, 0, join(scratch, 'mobilenetv2-safetensors'))).parameters;
    assert.deepEqual([...pth.keys()].sort(), [...safetensors.keys()].sort());
    for (const [name, tensor] of pth) assert.deepEqual(tensor.data, safetensors.get(name)!.data, name);
  });

  it('refuses a .pth whose pickle would run code, without running it', async () => {
    const cwd = process.cwd();
    process.chdir(scratch);
    try {
      await rejectsNaming(importWeights(join(reference, 'hostile.pth'), 'resnet50', join(scratch, 'hostile')), 'hostile.pth', 'posix.system');
    } finally {
      process.chdir(cwd);
    }
    assert.ok(!existsSync(join(scratch, 'hostile-pth-ran')));
  });

  describe('refuses a state dict that does not fit, naming the key', () => {
    let tensors: Map<string, NamedTensor>;
    const variant = (name: string, change: (t: Map<string, NamedTensor>) => void): string => {
      const copy = new Map(tensors);
      change(copy);
      const path = join(scratch, `${name}.safetensors`);
      writeFileSync(path, encodeSafetensors(copy));
      return path;
    };

    before(async () => {
      tensors = (await readWeightsFile(join(reference, 'mobilenetv2.safetensors'))).tensors;
    });

    it('a missing key', async () => {
      const path = variant('missing', (t) => t.delete('features.4.conv.1.1.running_var'));
      await rejectsNaming(importWeights(path, 'mobilenetv2', join(scratch, 'out-missing')), 'features.4.conv.1.1.running_var', 'is missing');
    });

    it('an extra key', async () => {
      const path = variant('extra', (t) => t.set('features.19.0.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) }));
      await rejectsNaming(importWeights(path, 'mobilenetv2', join(scratch, 'out-extra')), 'features.19.0.weight', 'not part of');
    });

    it('a wrong shape', async () => {
      // features.2 expands 16 channels to 96: a projection from 144 belongs to another block.
      const path = variant('shape', (t) => t.set('features.2.conv.2.weight', { dtype: 'F32', shape: [24, 144, 1, 1], data: new Float32Array(24 * 144) }));
      await rejectsNaming(importWeights(path, 'mobilenetv2', join(scratch, 'out-shape')), 'features.2.conv.2.weight', '[24,96,1,1]', '[24,144,1,1]');
    });

    it('another architecture', async () => {
      await rejectsNaming(importWeights(join(reference, 'mobilenetv2.safetensors'), 'resnet50', join(scratch, 'out-arch')), 'fc.weight', 'is missing');
    });
  });
});
