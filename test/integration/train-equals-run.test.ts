import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { RunReport } from '../../coordinator/report.js';
import { runCli } from '../helpers/cli.js';

function autoprune(...args: string[]) {
  return runCli(args, { env: { AUTOPRUNE_LOG_LEVEL: 'warn' } });
}

/** Every safetensors file of a run directory (checkpoints and export), by its path in the directory. */
function safetensorsFiles(runDir: string): Map<string, Buffer> {
  const paths = readdirSync(runDir, { recursive: true, encoding: 'utf8' }).filter((path) => path.endsWith('.safetensors'));
  return new Map(paths.sort().map((path) => [path, readFileSync(join(runDir, path))]));
}

describe('autoprune train is autoprune run with one worker', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-train-run-'));
  const config = join(root, 'small.yaml');
  const trained = join(root, 'train');
  const ran = join(root, 'run');

  before(async () => {
    // Dropout and the W/M split on: the random streams must agree too. Adam for W in the dense and prune
    // phases, SGD with momentum for the fine-tuning; checkpoints within phases as well as at their ends.
    writeFileSync(
      config,
      toYaml({
        seed: 11,
        backend: 'cpu',
        model: { name: 'lenet300', dropout: 0.2 },
        data: { dataset: 'mnist', trainSubset: 400, testSubset: 200 },
        batchSize: 40,
        prune: { auxGradient: 'magnitude', mu: { fc: 0.4 } },
        phases: [
          { phase: 'dense', steps: 6, weights: { lr: 1e-3 } },
          { phase: 'prune', steps: 6, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
          { phase: 'finetune', steps: 4, weights: { type: 'sgd', lr: 1e-2, momentum: 0.9 } },
        ],
        evaluation: { every: 3, batchSize: 200 },
        logging: { every: 2 },
        checkpoint: { every: 4, keep: 20 },
      }),
    );
    const train = await autoprune('train', config, '--out', trained);
    assert.equal(train.status, 0, `train failed:\n${train.stderr}`);
    assert.match(train.stdout, /compression \d+(\.\d)?x/);
    const run = await autoprune('run', config, '--workers', '1', '--out', ran);
    assert.equal(run.status, 0, `run failed:\n${run.stderr}`);
  });

  it('writes the same checkpoints, byte for byte: W, M and batch norm, and every optimizer', async () => {
    const fromTrain = safetensorsFiles(trained);
    const fromRun = safetensorsFiles(ran);
    assert.deepEqual([...fromTrain.keys()], [...fromRun.keys()]);
    const names = [...fromTrain.keys()];
    // Each phase checkpoints at step 4 (checkpoint.every) and at its end; the prune phase has M's optimizer too.
    assert.deepEqual(
      names.filter((name) => name.endsWith('model.safetensors')).map((name) => name.split('/')[1]),
      ['p00-s000000004', 'p00-s000000006', 'p01-s000000004', 'p01-s000000006', 'p02-s000000004'],
    );
    assert.ok(names.includes(join('checkpoints', 'p01-s000000006', 'optimizer.aux.safetensors')));
    assert.ok(names.includes(join('checkpoints', 'p02-s000000004', 'optimizer.weights.safetensors')));
    for (const [name, bytes] of fromTrain) assert.ok(bytes.equals(fromRun.get(name)!), `${name} differs`);
  });

  it('reports the same layer counts, totals and test accuracies', async () => {
    const read = (dir: string) => JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as RunReport;
    const [a, b] = [read(trained), read(ran)];
    assert.deepEqual(a.layers, b.layers);
    assert.deepEqual(a.totals, b.totals);
    assert.equal(a.modelParams, b.modelParams);
    assert.deepEqual([a.model, a.backend], [b.model, b.backend]);
    const phases = (report: RunReport) => report.phases.map(({ name, steps, testAccuracy }) => ({ name, steps, testAccuracy }));
    assert.deepEqual(phases(a), phases(b));
    assert.ok(a.totals.remaining < a.totals.params, 'the prune phase closed some gates');
  });
});
