import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { RunReport } from '../../coordinator/report.js';
import type { StoredCheckpoint } from '../../shared/checkpoint-store.js';
import type { NamedTensor } from '../../shared/safetensors.js';
import { largestRelativeDifference, newestCheckpoint, tensorRelativeDifference } from '../helpers/checkpoints.js';
import { type CliResult, runCli, startCli } from '../helpers/cli.js';
import { type NatsServer, natsServerForTests } from '../helpers/nats-server.js';
import { RunEvents } from '../helpers/run-events.js';
import { skipBecause } from '../helpers/skip.js';
import { smallMnistRun } from '../helpers/small-mnist-run.js';
import { ensureTensorflowAddon } from '../helpers/tensorflow-addon.js';

/**
 * Whole runs on the tensorflow backend, as the wasm ones are tested: `train` end to end on real MNIST, two
 * workers against one, and a run killed at a checkpoint and resumed, to the bit at equal world size. Each
 * worker's TensorFlow gets one thread per pool (tensorflow.*Threads), as two workers share this machine.
 */

const RUN = smallMnistRun(5, 20, { backend: 'tensorflow', tensorflow: { intraOpThreads: 1, interOpThreads: 1 } });

function readReport(runDir: string): RunReport {
  return JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as RunReport;
}

describe('runs on the tensorflow backend', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-tensorflow-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(RUN));
  let nats: NatsServer | undefined;
  let twoWorkers: StoredCheckpoint;

  before(async function () {
    this.timeout(30 * 60_000);
    const addon = await ensureTensorflowAddon();
    if ('missing' in addon) skipBecause(this, `the tensorflow backend cannot be built here: ${addon.missing}`);
    nats = await natsServerForTests();
    const result = await runCli(['run', config, '--workers', '2', '--out', join(root, 'two')]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(readReport(join(root, 'two')).backend, 'tensorflow');
    twoWorkers = await newestCheckpoint(join(root, 'two'));
    assert.equal(twoWorkers.checkpoint.position.step, 20);
  });
  after(async () => {
    await nats?.stop();
  });

  it('train, end to end on real MNIST: prunes LeNet-300-100 by more than half at over 90% test accuracy', async () => {
    const runDir = join(root, 'train');
    const steps = ['phases.0.steps=300', 'phases.1.steps=300', 'phases.2.steps=100'];
    const result = await runCli(
      [
        'train',
        'examples/quickstart-mnist.yaml',
        '--out',
        runDir,
        '--backend',
        'tensorflow',
        ...['data.trainSubset=2000', 'batchSize=100', 'evaluation.every=0', ...steps].flatMap((set) => ['--set', set]),
      ],
      { env: { AUTOPRUNE_LOG_LEVEL: 'warn' } },
    );
    assert.equal(result.status, 0, `train failed:\n${result.stderr}`);
    const report = readReport(runDir);
    assert.equal(report.backend, 'tensorflow');
    const final = report.phases[report.phases.length - 1]!;
    assert.ok(final.testAccuracy > 0.9, `test accuracy ${final.testAccuracy}`);
    assert.ok(report.totals.remaining < report.totals.params / 2, `remaining ${report.totals.remaining} of ${report.totals.params}`);
  });

  it('2 workers give the weights and masks of 1 worker with the same global batch', async () => {
    const result = await runCli(['run', config, '--workers', '1', '--out', join(root, 'one')]);
    assert.equal(result.status, 0, result.stderr);
    const one = await newestCheckpoint(join(root, 'one'));
    for (const [name, tensor] of one.checkpoint.parameters) {
      const other = twoWorkers.checkpoint.parameters.get(name)!;
      const difference = tensorRelativeDifference(tensor, other);
      assert.ok(difference <= 1e-5, `${name} differs by ${difference} (relative)`);
      if (name.endsWith('.mask')) {
        const gates = (t: NamedTensor) => Array.from(t.data as Float32Array, (m) => m > 0);
        assert.deepEqual(gates(other), gates(tensor), `${name}: the same gates are open`);
      }
    }
  });

  it('a 2-worker run killed at a checkpoint and resumed on 2 workers ends bit-identical to the uninterrupted one', async () => {
    const runDir = join(root, 'killed');
    const runId = basename(runDir);
    const events = await RunEvents.follow(nats!.url, runId);
    const run = startCli(['run', config, '--workers', '2', '--out', runDir, '--run-id', runId, '--nats', nats!.url]);
    events.publishedBy(run);
    let killed: CliResult;
    try {
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune' && d.step === 10);
      run.kill();
      killed = await run.waitForExit();
    } finally {
      run.kill();
      await events.close();
    }
    assert.equal(killed.signal, 'SIGKILL', 'the first attempt was killed');
    const resumed = await runCli(['run', '--resume', runDir, '--workers', '2']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.equal(resumed.log.filter((line) => line.event === 'run.resumed').length, 1, 'it resumed once');
    const final = await newestCheckpoint(runDir);
    assert.equal(final.checkpoint.position.step, 20);
    assert.equal(largestRelativeDifference(final, twoWorkers), 0, 'bit-identical to the uninterrupted run');
  });
});
