import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { ImageDataset } from '../../engine/data/dataset.js';
import { inMemoryData } from '../../engine/data/in-memory-source.js';
import { disposeNetwork } from '../../engine/network.js';
import { PhaseRunner } from '../../engine/phase-runner.js';
import { createTrainer } from '../../engine/setup.js';
import type { Checkpoint } from '../../shared/checkpoint.js';
import { CheckpointStore, readVerifiedCheckpoint } from '../../shared/checkpoint-store.js';
import { loadConfig, validateConfig } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { tinyNetwork } from '../helpers/tiny-network.js';

/** Defects a hostile review found in how input (checkpoints, config, batch sizes) is checked. */

function checkpointAt(step: number): Checkpoint {
  const values = Float32Array.from({ length: 16 }, (_, i) => i + step);
  return {
    position: { phase: 'dense', phaseIndex: 0, step, epoch: 0, configHash: 'abc', model: 'lenet300' },
    parameters: new Map([['fc1.weight', { dtype: 'F32', shape: [4, 4], data: values }]]),
    optimizers: new Map([['weights', { step, tensors: new Map([['fc1.weight/m', { dtype: 'F32', shape: [4, 4], data: values }]]) }]]),
  };
}

/** Rewrites a checkpoint's manifest.json through `edit`. */
function editManifest(checkpointDir: string, edit: (manifest: { files: Record<string, unknown> }) => void): void {
  const path = join(checkpointDir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as { files: Record<string, unknown> };
  edit(manifest);
  writeFileSync(path, JSON.stringify(manifest));
}

function flipLastByte(path: string): void {
  const bytes = readFileSync(path);
  bytes[bytes.length - 1]! ^= 0xff;
  writeFileSync(path, bytes);
}

describe('input defects', () => {
  describe('a checkpoint manifest must list every file the loader reads', () => {
    let dir: string;
    beforeEach(() => {
      dir = join(mkdtempSync(join(tmpdir(), 'autoprune-defects-')), 'checkpoints');
    });

    it('refuses a checkpoint whose manifest lists no files, naming the unlisted model file', async () => {
      const path = await new CheckpointStore(dir, 3).save(checkpointAt(2), {});
      editManifest(path, (manifest) => {
        manifest.files = {};
      });
      flipLastByte(join(path, 'model.safetensors'));
      await assert.rejects(
        readVerifiedCheckpoint(path),
        (error: Error) => error instanceof InputError && error.message.startsWith(`${join(path, 'model.safetensors')}: is not listed in the manifest`),
      );
    });

    it('refuses an optimizer file that is there but not listed', async () => {
      const path = await new CheckpointStore(dir, 3).save(checkpointAt(2), {});
      editManifest(path, (manifest) => {
        delete manifest.files['optimizer.weights.safetensors'];
      });
      await assert.rejects(readVerifiedCheckpoint(path), (error: Error) =>
        error.message.startsWith(`${join(path, 'optimizer.weights.safetensors')}: is not listed in the manifest`),
      );
    });

    it('refuses a manifest entry without a checksum as bad input, not a crash', async () => {
      const path = await new CheckpointStore(dir, 3).save(checkpointAt(2), {});
      editManifest(path, (manifest) => {
        manifest.files['model.safetensors'] = { bytes: 10 };
      });
      await assert.rejects(
        readVerifiedCheckpoint(path),
        (error: Error) => error instanceof InputError && /manifest\.json: .*model\.safetensors/.test(error.message),
      );
    });

    it('skips such a checkpoint for the previous one, with a warning naming the file', async () => {
      const warnings: string[] = [];
      const logger = { warn: (_: unknown, message: string) => warnings.push(message) } as unknown as Logger;
      const store = new CheckpointStore(dir, 3, logger);
      await store.save(checkpointAt(2), {});
      const newest = await store.save(checkpointAt(4), {});
      editManifest(newest, (manifest) => {
        manifest.files = {};
      });
      assert.equal((await store.latest())!.checkpoint.position.step, 2);
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0]!.includes(join(newest, 'model.safetensors')), warnings[0]);
    });
  });

  describe('batchSize against the samples a phase draws from', () => {
    before(async () => {
      await tf.setBackend('cpu');
    });

    /** `count` 2x2x1 images of two classes. */
    function dataset(count: number): ImageDataset {
      return {
        name: 'tiny',
        count,
        height: 2,
        width: 2,
        channels: 1,
        numClasses: 2,
        images: Float32Array.from({ length: count * 4 }, (_, i) => i % 3),
        labels: Uint8Array.from({ length: count }, (_, i) => i % 2),
      };
    }

    function runnerFor(batchSize: number, phases: unknown[], trainCount: number): PhaseRunner {
      const config = validateConfig({ model: { name: 'lenet300' }, data: { dataset: 'mnist' }, batchSize, phases }, 'test');
      const network = tinyNetwork();
      try {
        return new PhaseRunner(createTrainer(network, config), config, inMemoryData(dataset(trainCount), dataset(4)));
      } finally {
        disposeNetwork(network);
      }
    }
    const dense = { phase: 'dense', steps: 3, weights: { lr: 0.01 } };
    const prune = { phase: 'prune', steps: 3, weights: { lr: 0.01 }, aux: { lr: 0.1 } };

    it('refuses a batch larger than the training set, with both sizes', () => {
      assert.throws(
        () => runnerFor(40, [dense], 30),
        (error: Error) => error instanceof InputError && error.message.startsWith('batchSize: 40 is larger than the training set (30 samples)'),
      );
    });

    it("refuses a batch larger than a prune phase's half, with the sizes of the set and the half", () => {
      assert.throws(
        () => runnerFor(20, [dense, prune], 31),
        (error: Error) =>
          error instanceof InputError &&
          error.message.startsWith(
            'batchSize: 20 is larger than the halves of the training set (31 samples) that phases.1 (prune) draws from (16 and 15 samples)',
          ),
      );
    });

    it('accepts a batch as large as what each phase draws from, and ignores phases of no steps', () => {
      runnerFor(30, [dense], 30);
      runnerFor(15, [dense, prune], 31);
      runnerFor(50, [{ ...dense, steps: 0 }], 30);
    });
  });

  describe('validation messages say what was found', () => {
    const root = mkdtempSync(join(tmpdir(), 'autoprune-defects-config-'));
    const minimal = 'model: { name: lenet300 }\ndata: { dataset: mnist }\nphases: [{ phase: dense, steps: 1, weights: { lr: 0.01 } }]\n';

    async function messageOf(text: string, overrides: string[] = []): Promise<string> {
      const path = join(root, 'config.yaml');
      writeFileSync(path, text);
      const error = await loadConfig(path, overrides).then(
        () => assert.fail('the config was accepted'),
        (e: Error) => e,
      );
      assert.ok(error instanceof InputError, String(error));
      return error.message;
    }

    it('names Infinity from a YAML .inf', async () => {
      assert.match(await messageOf(`${minimal}batchSize: .inf\n`), /batchSize: .*\(found Infinity\)/);
    });

    it('names Infinity, -Infinity and NaN from --set, also where a shorthand is expanded', async () => {
      assert.match(await messageOf(minimal, ['batchSize=.inf']), /batchSize: .*\(found Infinity\)/);
      assert.match(await messageOf(minimal, ['model.dropout=-.inf']), /model\.dropout: .*\(found -Infinity\)/);
      assert.match(await messageOf(minimal, ['seed=.nan']), /seed: .*\(found NaN\)/);
      assert.match(await messageOf(minimal, ['phases.0.weights.lr=.inf']), /phases\.0\.weights\.lr\.value: .*\(found Infinity\)/);
    });
  });
});
