import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { RunReport } from '../../coordinator/report.js';
import { remainingFromMasks } from '../../engine/export.js';
import { CheckpointStore } from '../../shared/checkpoint-store.js';
import { readSafetensorsFile } from '../../shared/safetensors.js';
import { type CliResult, runCli } from '../helpers/cli.js';

function autoprune(...args: string[]): Promise<CliResult> {
  return runCli(args, { env: { AUTOPRUNE_LOG_LEVEL: 'warn' } });
}

describe('autoprune train, end to end on real MNIST', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-e2e-'));
  const runDir = join(root, 'run');
  let report: RunReport;

  before(async () => {
    const result = await autoprune(
      'train',
      'examples/quickstart-mnist.yaml',
      '--out',
      runDir,
      '--backend',
      'wasm',
      '--set',
      'data.trainSubset=2000',
      '--set',
      'batchSize=100',
      '--set',
      'phases.0.steps=300',
      '--set',
      'phases.1.steps=300',
      '--set',
      'phases.2.steps=100',
      '--set',
      'evaluation.every=0',
    );
    assert.equal(result.status, 0, `train failed:\n${result.stderr}`);
    assert.match(result.stdout, /compression \d+(\.\d)?x/);
    report = JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as RunReport;
  });

  it('prunes more than half of LeNet-300-100 and keeps test accuracy above 90%', () => {
    assert.equal(report.model, 'lenet300');
    assert.equal(report.backend, 'wasm');
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ['dense', 'prune', 'finetune'],
    );
    const final = report.phases[report.phases.length - 1]!;
    assert.ok(final.testAccuracy > 0.9, `test accuracy ${final.testAccuracy}`);
    assert.equal(report.totals.params, 266_200);
    assert.equal(report.modelParams, 266_610);
    assert.ok(report.totals.remaining < report.totals.params / 2, `remaining ${report.totals.remaining} of ${report.totals.params}`);
    assert.ok(Math.abs(report.totals.compression - report.totals.params / report.totals.remaining) < 1e-9);
    assert.ok(report.totals.flopsEffective < report.totals.flops);
  });

  it('writes pruned.safetensors that agrees with report.json', async () => {
    const { tensors, metadata } = await readSafetensorsFile(join(runDir, 'pruned.safetensors'));
    assert.equal(metadata.model, 'lenet300');
    assert.deepEqual(remainingFromMasks(tensors), { params: report.totals.params, remaining: report.totals.remaining });
    for (const layer of report.layers) {
      const mask = tensors.get(`${layer.name}.mask`)!;
      const weight = tensors.get(`${layer.name}.weight`)!;
      assert.equal(mask.dtype, 'U8');
      assert.deepEqual(mask.shape, layer.shape);
      let kept = 0;
      for (let i = 0; i < mask.data.length; i++) {
        kept += mask.data[i] as number;
        if (mask.data[i] === 0) assert.equal(weight.data[i], 0, `${layer.name}.weight[${i}] is pruned but not zero`);
      }
      assert.equal(kept, layer.remaining, layer.name);
      assert.ok(tensors.has(`${layer.name}.bias`));
    }
    assert.ok(![...tensors.keys()].some((name) => name.endsWith('.mask') && !report.layers.some((l) => `${l.name}.mask` === name)));
  });

  it('writes the resolved config and a checkpoint of W, M and both optimizers', async () => {
    const resolved = parseYaml(readFileSync(join(runDir, 'config.resolved.yaml'), 'utf8'));
    assert.equal(resolved.batchSize, 100);
    assert.equal(resolved.prune.nRatio, 0.001);
    const { checkpoint } = (await new CheckpointStore(join(runDir, 'checkpoints'), 1).latest())!;
    assert.equal(checkpoint.position.phase, 'finetune');
    assert.equal(checkpoint.position.step, 100);
    assert.match(checkpoint.position.configHash, /^[0-9a-f]{64}$/);
    assert.ok(checkpoint.parameters.has('fc1.weight') && checkpoint.parameters.has('fc1.mask'));
    assert.ok(checkpoint.optimizers.has('weights'));
  });

  it('starts a new run from the checkpoint of an earlier one (dense.init)', async () => {
    const resumed = join(root, 'from-checkpoint');
    writeFileSync(
      join(root, 'init.yaml'),
      [
        'model: { name: lenet300 }',
        'data: { dataset: mnist, trainSubset: 500, testSubset: 1000 }',
        'batchSize: 50',
        'prune: { mu: { fc: 0.4 } }',
        `phases:`,
        `  - { phase: dense, steps: 0, init: ${runDir}, weights: { lr: 0.001 } }`,
        '  - { phase: finetune, steps: 5, weights: { lr: 0.0001 } }',
      ].join('\n'),
    );
    const result = await autoprune('train', join(root, 'init.yaml'), '--out', resumed, '--backend', 'wasm');
    assert.equal(result.status, 0, result.stderr);
    const again = JSON.parse(readFileSync(join(resumed, 'report.json'), 'utf8')) as RunReport;
    // The masks came with the checkpoint: the fine-tuned model is exactly as sparse as the earlier run.
    assert.equal(again.totals.remaining, report.totals.remaining);
    assert.ok(again.phases[1]!.testAccuracy > 0.85, `accuracy ${again.phases[1]!.testAccuracy}`);
  });

  it('refuses a checkpoint of another model, naming the phase key', async () => {
    writeFileSync(
      join(root, 'wrong-model.yaml'),
      `model: { name: lenet5 }\ndata: { dataset: mnist, trainSubset: 100 }\nphases: [{ phase: dense, steps: 0, init: ${runDir}, weights: { lr: 0.001 } }]\n`,
    );
    const result = await autoprune('train', join(root, 'wrong-model.yaml'), '--out', join(root, 'wrong-model'), '--backend', 'wasm');
    assert.equal(result.status, 2);
    assert.match(result.stderr, /phases\.0\.init: is a checkpoint of another model; expected lenet5; found lenet300/);
  });

  it('names the damaged file when the checkpoint to start from is corrupt', async () => {
    const damaged = join(root, 'damaged-checkpoint');
    cpSync(join(runDir, 'checkpoints', 'p02-s000000100'), damaged, { recursive: true });
    const model = join(damaged, 'model.safetensors');
    writeFileSync(model, readFileSync(model).subarray(0, 1000));
    writeFileSync(
      join(root, 'damaged.yaml'),
      `model: { name: lenet300 }\ndata: { dataset: mnist, trainSubset: 100 }\nphases: [{ phase: dense, steps: 0, init: ${damaged}, weights: { lr: 0.001 } }]\n`,
    );
    const result = await autoprune('train', join(root, 'damaged.yaml'), '--out', join(root, 'damaged-run'), '--backend', 'wasm');
    assert.equal(result.status, 2);
    assert.ok(result.stderr.includes(model), result.stderr);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('autoprune report prints the per-layer table and totals', async () => {
    const result = await autoprune('report', runDir);
    assert.equal(result.status, 0, result.stderr);
    for (const text of ['fc1', 'fc2', 'fc3', 'total', 'compression']) assert.ok(result.stdout.includes(text), text);
  });

  it('refuses to overwrite a run directory, leaving it intact', async () => {
    const before = readFileSync(join(runDir, 'report.json'), 'utf8');
    const result = await autoprune('train', 'examples/quickstart-mnist.yaml', '--out', runDir);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /run directory is not empty/);
    assert.equal(readFileSync(join(runDir, 'report.json'), 'utf8'), before);
  });

  it('answers a bad config with one clear line, not a stack trace', async () => {
    const result = await autoprune('train', 'examples/quickstart-mnist.yaml', '--out', join(root, 'bad'), '--set', 'prune.bogus=1', '--set', 'batchSize=big');
    assert.equal(result.status, 2);
    assert.match(result.stderr, /prune\.bogus: unknown key/);
    assert.match(result.stderr, /batchSize: .*expected number.*"big"/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('names an unknown layer in model.layers', async () => {
    const result = await autoprune(
      'train',
      'examples/quickstart-mnist.yaml',
      '--out',
      join(root, 'bad-layer'),
      '--set',
      'model.layers.conv9=neuron',
      '--set',
      'phases.0.steps=0',
    );
    assert.equal(result.status, 2);
    assert.match(result.stderr, /model\.layers\.conv9: is not a prunable layer of lenet300; expected one of fc1, fc2, fc3/);
  });

  it('names a data directory that does not exist', async () => {
    writeFileSync(
      join(root, 'cifar.yaml'),
      'model: { name: vgg-cifar }\ndata: { dataset: cifar10, dir: /nonexistent/cifar }\nphases: [{ phase: dense, steps: 1, weights: { lr: 0.1 } }]\n',
    );
    const result = await autoprune('train', join(root, 'cifar.yaml'), '--out', join(root, 'bad-data'));
    assert.equal(result.status, 2);
    assert.match(result.stderr, /\/nonexistent\/cifar/);
  });
});
