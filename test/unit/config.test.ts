import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layerGating } from '../../engine/models/channel-gates.js';
import { applyOverrides, configHash, loadConfig, validateConfig } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';

const minimal = {
  model: { name: 'lenet300' },
  data: { dataset: 'mnist' },
  phases: [{ phase: 'prune', steps: 10, weights: { lr: 1e-3 }, aux: { lr: 0.1 } }],
};

function rejects(raw: unknown, overrides: string[], ...fragments: string[]): void {
  assert.throws(
    () => validateConfig(applyOverrides(raw as Record<string, unknown>, overrides), 'cfg.yaml'),
    (error: unknown) => {
      assert.ok(error instanceof InputError, `not an InputError: ${String(error)}`);
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
      return true;
    },
  );
}

describe('run configuration', () => {
  it('fills in the paper defaults', () => {
    const config = validateConfig(minimal, 'cfg.yaml');
    assert.equal(config.prune.surrogate, 'softplus');
    assert.equal(config.prune.auxGradient, 'sign');
    assert.deepEqual(config.prune.mu, { conv: 0.05, fc: 0.05 });
    assert.equal(config.prune.nRatio, 1e-3);
    assert.deepEqual(config.regularization, { l1: 1e-6, l2: 5e-5 });
    assert.deepEqual(config.phases[0], {
      phase: 'prune',
      steps: 10,
      weights: { type: 'adam', lr: { type: 'constant', value: 1e-3 }, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
      aux: { type: 'adam', lr: { type: 'constant', value: 0.1 }, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    });
  });

  it('--set overrides nested keys and array elements, values read as YAML scalars', () => {
    const config = validateConfig(
      applyOverrides(minimal, ['batchSize=64', 'model.granularity=neuron', 'phases.0.steps=5', 'prune.mu.fc=0.4', 'model.layers.fc1=weight']),
      'cfg',
    );
    assert.equal(config.batchSize, 64);
    assert.equal(config.model.granularity, 'neuron');
    assert.equal(config.phases[0]!.steps, 5);
    assert.equal(config.prune.mu.fc, 0.4);
    assert.deepEqual(config.model.layers, { fc1: 'weight' });
    assert.equal(minimal.phases[0]!.steps, 10, 'the original object is not modified');
  });

  it('rejects an unknown key, naming it', () => rejects(minimal, ['prune.speed=3'], 'cfg.yaml', 'prune.speed', 'unknown key'));
  it('rejects a wrong type, naming the key, what was expected and found', () => rejects(minimal, ['batchSize=abc'], 'batchSize', 'expected number', '"abc"'));
  it('rejects an unknown model, listing the known ones', () => rejects(minimal, ['model.name=lenet7'], 'model.name', 'lenet5', 'mobilenetv2', '"lenet7"'));
  it('rejects an unknown surrogate', () => rejects(minimal, ['prune.surrogate=tanh'], 'prune.surrogate', 'softplus'));
  it('rejects a negative step count', () => rejects(minimal, ['phases.0.steps=-1'], 'phases.0.steps'));
  it('rejects a malformed override', () => rejects(minimal, ['batchSize'], '--set batchSize', 'key.path=value'));
  it('rejects descending into a value', () => rejects(minimal, ['model.name.x=1'], 'model.name is not a section'));
  it('rejects an optimizer key of the other optimizer', () => rejects(minimal, ['phases.0.weights.momentum=0.9'], 'phases.0.weights.momentum', 'unknown key'));

  it('reports a missing file and invalid YAML by file name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'autoprune-config-'));
    await assert.rejects(loadConfig(join(dir, 'nope.yaml')), /nope\.yaml: cannot read the config file; found ENOENT/);
    writeFileSync(join(dir, 'bad.yaml'), 'model: [unclosed\n');
    await assert.rejects(loadConfig(join(dir, 'bad.yaml')), /bad\.yaml: not valid YAML/);
    writeFileSync(join(dir, 'list.yaml'), '- 1\n- 2\n');
    await assert.rejects(loadConfig(join(dir, 'list.yaml')), /list\.yaml: the config must be a mapping/);
  });

  it('validates every shipped example, its layer gating included', async () => {
    const names = readdirSync('examples').filter((file) => file.endsWith('.yaml'));
    assert.ok(names.length >= 8);
    for (const name of names) {
      const config = await loadConfig(join('examples', name));
      assert.ok(config.phases.length > 0);
      layerGating(config.model.name, config.model.granularity, config.model.layers);
    }
  });

  it('gives the ImageNet examples the paper’s settings, starting from an imported checkpoint', async () => {
    const weightRates = { resnet50: [1e-5, 1e-6], mobilenetv2: [1e-5, 1e-5], alexnet: [1e-3, 1e-3] } as const;
    for (const [model, [prune, finetune]] of Object.entries(weightRates)) {
      const config = await loadConfig(join('examples', `${model}-imagenet.yaml`));
      assert.equal(config.model.name, model);
      assert.equal(config.model.granularity, model === 'alexnet' ? 'weight' : 'neuron');
      assert.deepEqual(config.prune.mu, { conv: 5e-2, fc: 5e-2 });
      assert.deepEqual(config.prune.maskInit, { mean: 0.5, std: 0.1 });
      assert.deepEqual(config.regularization, { l1: 1e-6, l2: 5e-5 });
      const [dense, pruning, finetuning] = config.phases;
      assert.equal(dense?.phase === 'dense' && dense.init, `runs/${model}-torchvision`);
      assert.ok(pruning?.phase === 'prune');
      assert.equal(pruning.aux.lr.value, 1.5e-2);
      assert.equal(pruning.weights.lr.value, prune);
      // ResNet-50's W rate steps down by 10 to 1e-6 within pruning.
      if (model === 'resnet50') assert.deepEqual(pruning.weights.lr, { type: 'step', value: 1e-5, gamma: 0.1, every: 30000 });
      assert.equal(finetuning?.weights.lr.value, finetune);
    }
  });

  it('hashes the resolved config independently of key order', () => {
    const a = validateConfig(minimal, 'a');
    const b = validateConfig({ phases: minimal.phases, data: minimal.data, model: minimal.model }, 'b');
    assert.equal(configHash(a), configHash(b));
    assert.notEqual(configHash(a), configHash(validateConfig(applyOverrides(minimal, ['seed=2']), 'c')));
  });

  it('hashes what determines the numbers, not the operational settings', () => {
    const hashWith = (overrides: string[]) => configHash(validateConfig(applyOverrides(minimal, overrides), 'test'));
    const base = hashWith([]);
    for (const operational of ['logging.every=7', 'checkpoint.every=9', 'distributed.heartbeat.timeoutSeconds=9', 'distributed.maxRecoveries=2']) {
      assert.equal(hashWith([operational]), base, operational);
    }
    for (const numerical of ['distributed.collective.compression=fp16', 'batchSize=16', 'prune.mu.fc=0.3', 'regularization.l2=0']) {
      assert.notEqual(hashWith([numerical]), base, numerical);
    }
  });
});
