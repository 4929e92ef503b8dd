import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { CheckpointStore, type StoredCheckpoint } from '../../shared/checkpoint-store.js';
import { largestRelativeDifference, newestCheckpoint } from '../helpers/checkpoints.js';

/**
 * Checkpoints and --resume, end to end: real coordinator and worker processes on loopback, SIGKILL, real
 * files. SGD keeps runs comparable to the last bit where the world size stays the same.
 */

const CLI = join('dist', 'cli', 'main.js');
const sgd = { type: 'sgd', lr: 0.05 };
const CONFIG = {
  seed: 5,
  backend: 'wasm',
  model: { name: 'lenet300', dropout: 0 },
  data: { dataset: 'mnist', trainSubset: 1000, testSubset: 200 },
  batchSize: 60,
  prune: { auxGradient: 'magnitude', mu: { conv: 0.2, fc: 0.4 } },
  phases: [
    { phase: 'dense', steps: 10, weights: sgd },
    { phase: 'prune', steps: 30, weights: sgd, aux: { type: 'sgd', lr: 1 } },
  ],
  evaluation: { every: 0, batchSize: 200 },
  logging: { every: 5 },
  checkpoint: { every: 5, keep: 3 },
};

interface Finished {
  status: number | null;
  stdout: string;
  stderr: string;
}

function autoprune(args: string[], options: { killWhen?: RegExp } = {}): Promise<Finished> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (options.killWhen?.test(stderr)) child.kill('SIGKILL');
  });
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
}

describe('checkpoints and resume, end to end', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-resume-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));
  let reference: StoredCheckpoint;

  before(async () => {
    const result = await autoprune(['run', config, '--workers', '2', '--out', join(root, 'reference')]);
    assert.equal(result.status, 0, result.stderr);
    reference = await newestCheckpoint(join(root, 'reference'));
    assert.equal(reference.checkpoint.position.step, 30);
  });

  it('continues a run whose coordinator was killed at the exact step: the same weights and masks to the bit', async () => {
    const runDir = join(root, 'killed');
    // Kill the coordinator (and so the run) once the checkpoint at prune step 15 is on disk.
    const killed = await autoprune(['run', config, '--workers', '2', '--out', runDir], { killWhen: /"event":"checkpoint\.saved","phase":"prune","step":15/ });
    assert.equal(killed.status, null, 'the first attempt was killed');
    const stepsBefore = (await newestCheckpoint(runDir)).checkpoint.position.step;
    assert.ok(stepsBefore >= 15 && stepsBefore < 30, `killed at ${stepsBefore}`);

    const resumed = await autoprune(['run', '--resume', runDir, '--workers', '2']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /"event":"run.resumed"/);
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
    const killed = await autoprune(['run', config, '--workers', '2', '--out', runDir], { killWhen: /"event":"checkpoint\.saved","phase":"prune","step":10/ });
    assert.equal(killed.status, null);
    const resumed = await autoprune(['run', '--resume', runDir, '--workers', '3']);
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
    const resumed = await autoprune(['run', '--resume', runDir, '--workers', '1']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(resumed.stderr.includes(bad), 'the warning names the damaged file');
    assert.match(resumed.stderr, /does not match its checksum/);
  });

  it('refuses to resume a directory without a valid checkpoint, and a resume that tries to change the config', async () => {
    const empty = await autoprune(['run', '--resume', join(root, 'nowhere')]);
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, /nowhere.*config.resolved.yaml: cannot read the config file/);
    const changed = await autoprune(['run', '--resume', join(root, 'killed'), '--set', 'batchSize=10']);
    assert.equal(changed.status, 2);
    assert.match(changed.stderr, /--resume: takes the run directory's own config; --set cannot change it/);
  });
});
