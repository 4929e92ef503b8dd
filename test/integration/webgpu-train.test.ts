import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunReport } from '../../coordinator/report.js';
import { ALLOW_SOFTWARE_WEBGPU_ENV } from '../../engine/backend.js';
import { runCli } from '../helpers/cli.js';
import { lavapipe, useLavapipe } from '../helpers/lavapipe.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * `autoprune train --backend webgpu` in Node, as a user runs it, on lavapipe (a CPU Vulkan driver) with
 * the software-adapter opt-in from the environment: dense and prune steps, evaluation, checkpoints and
 * the report, every read from the device asynchronous. That the numbers match cpu's is
 * test/unit/webgpu-lavapipe.test.ts's concern; this one proves the whole path runs and ends.
 */
describe('autoprune train on webgpu (lavapipe)', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-webgpu-'));
  const env: NodeJS.ProcessEnv = { [ALLOW_SOFTWARE_WEBGPU_ENV]: '1', AUTOPRUNE_LOG_LEVEL: 'info' };

  before(async function () {
    const found = await lavapipe();
    if ('missing' in found) skipBecause(this, `no CPU Vulkan driver for the webgpu tests: ${found.missing}`);
    useLavapipe(found, env);
  });

  it('trains LeNet-5 for a few dense and prune steps, evaluates, checkpoints, reports and exits', async () => {
    const config = join(root, 'lenet5.yaml');
    writeFileSync(
      config,
      [
        'model: { name: lenet5 }',
        'data: { dataset: mnist, trainSubset: 200, testSubset: 64 }',
        'batchSize: 16',
        'phases:',
        '  - { phase: dense, steps: 2, weights: { lr: 0.001 } }',
        '  - { phase: prune, steps: 2, weights: { lr: 0.001 }, aux: { lr: 0.1 } }',
        'evaluation: { batchSize: 64 }',
        'logging: { every: 1 }',
      ].join('\n'),
    );
    const runDir = join(root, 'run');
    const result = await runCli(['train', config, '--backend', 'webgpu', '--out', runDir], { env });
    assert.equal(result.status, 0, result.stderr);
    const steps = result.log.filter((line) => line.event === 'step');
    assert.deepEqual(
      steps.map((line) => [line.phase, line.step]),
      [
        ['dense', 1],
        ['dense', 2],
        ['prune', 1],
        ['prune', 2],
      ],
    );
    for (const line of steps) assert.ok(Number.isFinite(line.loss) && (line.loss as number) > 0, `loss ${line.loss}`);
    assert.ok(
      steps.filter((line) => line.phase === 'prune').every((line) => Number.isFinite(line.auxLoss)),
      'M steps report their loss',
    );
    const report = JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as RunReport;
    assert.equal(report.backend, 'webgpu');
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ['dense', 'prune'],
    );
    assert.ok(report.phases.every((p) => p.testAccuracy >= 0 && p.testAccuracy <= 1));
    assert.match(result.stdout, /backend webgpu/);
  });
});
