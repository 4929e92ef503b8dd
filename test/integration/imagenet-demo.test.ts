import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunReport } from '../../coordinator/report.js';
import { runCli } from '../helpers/cli.js';
import { skipBecause } from '../helpers/skip.js';
import { torchvisionMissing, torchvisionReference } from '../helpers/torchvision.js';

/**
 * examples/imagenet-cpu-demo.yaml as a user runs it, on the small ImageNet-like folder `autoprune data
 * generate` writes: ResNet-50 through dense, prune and finetune with the channel rule's gates; and MobileNetV2
 * pruned from torchvision weights that `autoprune import` brought in (a 4-class torchvision model).
 */

const DEMO = join('examples', 'imagenet-cpu-demo.yaml');

function readReport(runDir: string): RunReport {
  return JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as RunReport;
}

describe('the ImageNet CPU demo', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-imagenet-demo-'));
  let data: string;
  after(() => rmSync(root, { recursive: true, force: true }));

  // The data as the README makes it: `autoprune data generate`, a process of its own.
  before(async () => {
    data = join(root, 'imagenet-demo');
    const generated = await runCli(['data', 'generate', data, '--classes', '4', '--per-class', '8', '--val-per-class', '2', '--size', '40']);
    assert.equal(generated.status, 0, generated.stderr);
  });

  const demo = (model: string, out: string, ...sets: string[]) =>
    runCli(
      ['train', DEMO, '--out', out, '--set', `data.dir=${data}`, '--set', `data.cacheDir=${join(root, 'cache')}`, '--set', `model.name=${model}`, ...sets],
      {
        env: { AUTOPRUNE_LOG_LEVEL: 'warn' },
      },
    );

  it('prunes ResNet-50’s bottleneck channels end to end', async () => {
    const out = join(root, 'runs', 'resnet50');
    const result = await demo('resnet50', out);
    assert.equal(result.status, 0, result.stderr);
    const report = readReport(out);
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.steps]),
      [
        ['dense', 1],
        ['prune', 3],
        ['finetune', 1],
      ],
    );
    const gating = new Map(report.layers.map((l) => [l.name, l.granularity]));
    assert.equal(gating.get('layer1.0.conv1'), 'neuron');
    assert.equal(gating.get('layer1.0.conv2'), 'neuron');
    assert.equal(gating.get('layer1.0.conv3'), 'none');
    assert.equal(gating.get('layer1.0.downsample.0'), 'none');
    assert.equal(gating.get('fc'), 'none');
  });

  it('imports torchvision MobileNetV2 weights and prunes its expansion channels from them', async function () {
    const missing = await torchvisionMissing();
    if (missing) skipBecause(this, missing);
    const reference = await torchvisionReference();
    const imported = join(root, 'mobilenetv2-torchvision');
    const imports = await runCli(['import', join(reference, 'mobilenetv2-4-classes.safetensors'), '--model', 'mobilenetv2', '--out', imported]);
    assert.equal(imports.status, 0, imports.stderr);
    assert.match(imports.stdout, /\(4 classes\)/);

    const out = join(root, 'runs', 'mobilenetv2');
    const result = await demo('mobilenetv2', out, '--set', 'phases.0.steps=0', '--set', `phases.0.init=${imported}`);
    assert.equal(result.status, 0, result.stderr);
    const report = readReport(out);
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.steps]),
      [
        ['dense', 0],
        ['prune', 3],
        ['finetune', 1],
      ],
    );
    const gating = new Map(report.layers.map((l) => [l.name, l.granularity]));
    assert.equal(gating.get('features.2.expand'), 'neuron');
    assert.equal(gating.get('features.2.depthwise'), 'none');
    assert.equal(gating.get('features.2.project'), 'none');

    // A second import into the same directory is refused rather than overwriting it.
    const again = await runCli(['import', join(reference, 'mobilenetv2-4-classes.safetensors'), '--model', 'mobilenetv2', '--out', imported]);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /refusing to overwrite/);
  });
});
