import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunReport } from '../../coordinator/report.js';
import { remainingFromMasks } from '../../engine/export.js';
import { readSafetensorsFile } from '../../shared/safetensors.js';
import { runCli } from '../helpers/cli.js';

/** Writes `records` CIFAR-10 binary records (label byte + 3072 pixel bytes) with a learnable pattern. */
function writeCifarBatch(path: string, records: number, seed: number): void {
  const bytes = Buffer.alloc(records * 3073);
  let state = seed;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  for (let r = 0; r < records; r++) {
    const label = r % 10;
    bytes[r * 3073] = label;
    for (let i = 0; i < 3072; i++) bytes[r * 3073 + 1 + i] = Math.floor(label * 20 + next() * 60);
  }
  writeFileSync(path, bytes);
}

describe('autoprune train on CIFAR-10 binary files (VGG-like net, batch norm, augmentation, mixed granularity)', function () {
  this.timeout(600_000);

  it('runs dense → prune → finetune and exports masks of both granularities', async () => {
    const root = mkdtempSync(join(tmpdir(), 'autoprune-cifar-'));
    const data = join(root, 'cifar');
    mkdirSync(data);
    for (let b = 1; b <= 5; b++) writeCifarBatch(join(data, `data_batch_${b}.bin`), 8, b);
    writeCifarBatch(join(data, 'test_batch.bin'), 10, 99);
    writeFileSync(
      join(root, 'vgg.yaml'),
      [
        'model: { name: vgg-cifar, granularity: weight, layers: { conv1: neuron, fc1: neuron } }',
        `data: { dataset: cifar10, dir: ${data} }`,
        'batchSize: 2',
        'prune: { mu: { conv: 0.5, fc: 0.5 } }',
        'phases:',
        '  - { phase: dense, steps: 1, weights: { type: sgd, lr: 0.01 } }',
        '  - { phase: prune, steps: 2, weights: { lr: 0.001 }, aux: { lr: 0.5 } }',
        '  - { phase: finetune, steps: 1, weights: { lr: { type: cosine, value: 0.001 } } }',
        'evaluation: { batchSize: 5 }',
      ].join('\n'),
    );
    const out = join(root, 'run');
    const result = await runCli(['train', join(root, 'vgg.yaml'), '--out', out, '--backend', 'wasm'], { env: { AUTOPRUNE_LOG_LEVEL: 'warn' } });
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    assert.equal(report.layers.length, 15);
    assert.equal(report.layers.find((l) => l.name === 'conv1')!.granularity, 'neuron');
    assert.equal(report.layers.find((l) => l.name === 'conv2')!.granularity, 'weight');
    assert.ok(report.totals.remaining < report.totals.params, 'something was pruned');

    const { tensors } = await readSafetensorsFile(join(out, 'pruned.safetensors'));
    assert.deepEqual(remainingFromMasks(tensors), { params: report.totals.params, remaining: report.totals.remaining });
    // A neuron mask is constant across each filter: all of a filter's weights are kept or none.
    const mask = tensors.get('conv1.mask')!;
    const filters = mask.shape[3]!;
    for (let f = 0; f < filters; f++) {
      const values = new Set<number>();
      for (let i = f; i < mask.data.length; i += filters) values.add(mask.data[i] as number);
      assert.equal(values.size, 1, `filter ${f} is partly pruned`);
    }
    for (const name of ['conv1.bn.gamma', 'conv1.bn.moving_mean', 'fc1.bias']) assert.ok(tensors.has(name), name);
    assert.ok(![...tensors.keys()].some((k) => k.endsWith('.mask') && tensors.get(k)!.dtype !== 'U8'));
  });
});
