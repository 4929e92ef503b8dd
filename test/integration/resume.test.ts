import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { CheckpointStore, type StoredCheckpoint } from '../../shared/checkpoint-store.js';
import { largestRelativeDifference, newestCheckpoint } from '../helpers/checkpoints.js';
import { type CliResult, runCli, startCli } from '../helpers/cli.js';
import { type NatsServer, natsServerForTests } from '../helpers/nats-server.js';
import { RunEvents } from '../helpers/run-events.js';
import { smallMnistRun } from '../helpers/small-mnist-run.js';

/**
 * Checkpoints and --resume, end to end: real coordinator and worker processes on loopback, SIGKILL, real
 * files. SGD keeps runs comparable to the last bit where the world size stays the same.
 */

const CONFIG = smallMnistRun(5, 30);

describe('checkpoints and resume, end to end', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-resume-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));
  let reference: StoredCheckpoint;
  let nats: NatsServer;

  before(async () => {
    nats = await natsServerForTests();
    const result = await runCli(['run', config, '--workers', '2', '--out', join(root, 'reference')]);
    assert.equal(result.status, 0, result.stderr);
    reference = await newestCheckpoint(join(root, 'reference'));
    assert.equal(reference.checkpoint.position.step, 30);
  });
  after(async () => {
    await nats?.stop();
  });

  /** `autoprune run` of the test's config into `runDir`, killed (SIGKILL) once it saved the checkpoint at prune step `step`. */
  async function runKilledAtCheckpoint(runDir: string, step: number): Promise<CliResult> {
    const runId = basename(runDir);
    const events = await RunEvents.follow(nats.url, runId);
    const run = startCli(['run', config, '--workers', '2', '--out', runDir, '--run-id', runId, '--nats', nats.url]);
    events.publishedBy(run);
    try {
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune' && d.step === step);
      run.kill();
      return await run.waitForExit();
    } finally {
      run.kill();
      await events.close();
    }
  }

  it('continues a run whose coordinator was killed at the exact step: the same weights and masks to the bit', async () => {
    const runDir = join(root, 'killed');
    // Kill the coordinator (and so the run) once the checkpoint at prune step 15 is on disk.
    const killed = await runKilledAtCheckpoint(runDir, 15);
    assert.equal(killed.signal, 'SIGKILL', 'the first attempt was killed');
    // Its two workers saw the launcher go (their IPC channel closed) and stopped, rather than outliving it.
    assert.equal(killed.log.filter((line) => line.event === 'worker.orphaned').length, 2, 'both local workers stopped with their launcher');
    const stepsBefore = (await newestCheckpoint(runDir)).checkpoint.position.step;
    assert.ok(stepsBefore >= 15 && stepsBefore < 30, `killed at ${stepsBefore}`);

    const resumed = await runCli(['run', '--resume', runDir, '--workers', '2']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.deepEqual(
      resumed.log.filter((line) => line.event === 'run.resumed').map((line) => [line.phase, line.step]),
      [['prune', stepsBefore]],
      'resumed from the newest checkpoint',
    );
    assert.match(resumed.stdout, /compression/);
    const final = await newestCheckpoint(runDir);
    assert.equal(final.checkpoint.position.step, 30);
    assert.equal(largestRelativeDifference(final, reference), 0, 'no sample was skipped or seen twice: bit-identical to the uninterrupted run');
    const report = JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as { phases: Array<{ name: string }> };
    assert.deepEqual(
      report.phases.map((p) => p.name),
      ['dense', 'prune'],
      'the dense phase before the kill is in the report',
    );
  });

  it('resumes with another world size: the rest of the epoch is repartitioned and the run lands on the same state', async () => {
    const runDir = join(root, 'resized');
    const killed = await runKilledAtCheckpoint(runDir, 10);
    assert.equal(killed.signal, 'SIGKILL');
    const resumed = await runCli(['run', '--resume', runDir, '--workers', '3']);
    assert.equal(resumed.status, 0, resumed.stderr);
    const final = await newestCheckpoint(runDir);
    assert.equal(final.manifest.run.worldSize, 3);
    // Only the order of the sums changed: rounding-level differences.
    assert.ok(largestRelativeDifference(final, reference) < 1e-5, `difference ${largestRelativeDifference(final, reference)}`);
  });

  it('resumes from the previous checkpoint when the newest is corrupt, and says which file was bad', async () => {
    const runDir = join(root, 'corrupt');
    cpSync(join(root, 'killed'), runDir, { recursive: true });
    const store = new CheckpointStore(join(runDir, 'checkpoints'), 3);
    const names = await store.list();
    const bad = join(runDir, 'checkpoints', names[names.length - 1]!, 'model.safetensors');
    writeFileSync(bad, readFileSync(bad).subarray(0, 5000));
    const resumed = await runCli(['run', '--resume', runDir, '--workers', '1']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(resumed.stderr.includes(bad), 'the warning names the damaged file');
    assert.match(resumed.stderr, /does not match its checksum/);
  });

  it('refuses to resume a directory without a valid checkpoint, and a resume that tries to change the config', async () => {
    const empty = await runCli(['run', '--resume', join(root, 'nowhere')]);
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, /nowhere.*config.resolved.yaml: cannot read the config file/);
    const changed = await runCli(['run', '--resume', join(root, 'killed'), '--set', 'batchSize=10']);
    assert.equal(changed.status, 2);
    assert.match(changed.stderr, /--resume: takes the run directory's own config; --set cannot change it/);
  });
});
