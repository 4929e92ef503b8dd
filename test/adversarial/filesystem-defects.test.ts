import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * Defects a hostile review found where runs meet the file system and bad input, checked through real
 * processes of the CLI on real files (and, as root, a real read-only mount).
 */

const CONFIG = {
  backend: 'wasm',
  model: { name: 'lenet300' },
  data: { dataset: 'mnist', trainSubset: 300, testSubset: 100 },
  batchSize: 30,
  phases: [
    { phase: 'dense', steps: 2, weights: { lr: 1e-3 } },
    { phase: 'prune', steps: 2, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
  ],
  evaluation: { batchSize: 100 },
};

function autoprune(args: string[], logLevel = 'silent') {
  return runCli(args, { env: { AUTOPRUNE_LOG_LEVEL: logLevel } });
}

/** The CLI's own message: the last line of stderr, after checking that no stack trace came with it. */
function message(stderr: string): string {
  assert.doesNotMatch(stderr, /\n\s+at /, stderr);
  return stderr.trimEnd().split('\n').at(-1)!;
}

describe('file system and input defects, through the CLI', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-fs-defects-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));

  describe('--out on a read-only file system', () => {
    const mountPoint = join(root, 'read-only');
    let cannotMount: string | undefined;

    before(async () => {
      mkdirSync(mountPoint);
      const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mountPoint], { encoding: 'utf8' });
      if (mount.error || mount.status !== 0) cannotMount = `cannot mount a read-only tmpfs here: ${mount.error?.message ?? mount.stderr.trim()}`;
    });
    after(() => {
      if (cannotMount === undefined) spawnSync('umount', [mountPoint]);
    });
    beforeEach(function () {
      if (cannotMount !== undefined) skipBecause(this, cannotMount);
    });

    for (const command of ['train', 'run']) {
      it(`${command} into an existing empty directory: one line naming EROFS and the path, exit 2`, async () => {
        const result = await autoprune([command, config, '--out', mountPoint]);
        assert.equal(result.status, 2, result.stderr);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
        assert.ok(message(result.stderr).includes(mountPoint), result.stderr);
        assert.match(result.stderr, /read-only file system \(EROFS\)/);
      });

      it(`${command} into a new directory: the cause is EROFS, not ENOENT`, async () => {
        const out = join(mountPoint, 'new', 'run');
        const result = await autoprune([command, config, '--out', out]);
        assert.equal(result.status, 2, result.stderr);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
        assert.ok(message(result.stderr).includes(out), result.stderr);
        assert.match(result.stderr, /read-only file system \(EROFS\)/);
        assert.doesNotMatch(result.stderr, /ENOENT/);
      });
    }
  });

  describe('a run that fails before its first checkpoint', () => {
    it('leaves its --out usable by the next run, with good input', async () => {
      const out = join(root, 'retried');
      const failed = await autoprune(['train', config, '--out', out, '--set', 'data.dir=/nonexistent']);
      assert.equal(failed.status, 2, failed.stderr);
      assert.match(message(failed.stderr), /\/nonexistent/);
      const retried = await autoprune(['train', config, '--out', out]);
      assert.equal(retried.status, 0, retried.stderr);
      assert.ok(existsSync(join(out, 'report.json')));
    });

    it('still refuses a directory that holds a checkpoint', async () => {
      const out = join(root, 'with-progress');
      mkdirSync(join(out, 'checkpoints', 'p00-s000000002'), { recursive: true });
      writeFileSync(join(out, 'config.resolved.yaml'), toYaml(CONFIG));
      const result = await autoprune(['train', config, '--out', out]);
      assert.equal(result.status, 2, result.stderr);
      assert.match(message(result.stderr), /run directory is not empty.*found checkpoints/);
    });
  });

  it('bad data in a distributed run is bad input: exit 2, naming the path', async () => {
    const result = await autoprune(['run', config, '--workers', '2', '--out', join(root, 'bad-data'), '--set', 'data.dir=/nonexistent']);
    assert.equal(result.status, 2, result.stderr);
    assert.match(message(result.stderr), /^autoprune run: .*\/nonexistent: data directory not found/);
  });

  it('a batch larger than a prune phase draws from is refused, with the sizes', async () => {
    const result = await autoprune(['train', config, '--out', join(root, 'big-batch'), '--set', 'batchSize=200']);
    assert.equal(result.status, 2, result.stderr);
    assert.match(message(result.stderr), /batchSize: 200 is larger than the halves of the training set \(300 samples\) .*\(150 and 150 samples\)/);
  });

  describe('resume past a checkpoint whose manifest lists no files', () => {
    const finished = join(root, 'finished');

    /** A copy of the finished run whose newest checkpoint has an empty file list and a corrupt model. */
    function tamperedCopy(name: string, checkpoints: string[]): string {
      const copy = join(root, name);
      cpSync(finished, copy, { recursive: true });
      for (const checkpoint of checkpoints) {
        const manifestPath = join(copy, 'checkpoints', checkpoint, 'manifest.json');
        writeFileSync(manifestPath, JSON.stringify({ ...JSON.parse(readFileSync(manifestPath, 'utf8')), files: {} }));
        const model = join(copy, 'checkpoints', checkpoint, 'model.safetensors');
        const bytes = readFileSync(model);
        bytes[bytes.length - 1]! ^= 0xff;
        writeFileSync(model, bytes);
      }
      return copy;
    }

    before(async () => {
      const result = await autoprune(['train', config, '--out', finished]);
      assert.equal(result.status, 0, result.stderr);
    });

    it('skips it with a warning naming the file and resumes from the one before', async () => {
      const copy = tamperedCopy('resumed', ['p01-s000000002']);
      const result = await autoprune(['run', '--resume', copy, '--workers', '1'], 'warn');
      assert.equal(result.status, 0, result.stderr);
      assert.ok(result.stderr.includes(join(copy, 'checkpoints', 'p01-s000000002', 'model.safetensors')), result.stderr);
      assert.match(result.stderr, /skipping checkpoint p01-s000000002: .*is not listed in the manifest/);
    });

    it('fails clearly when no checkpoint is valid', async () => {
      const copy = tamperedCopy('unusable', ['p00-s000000002', 'p01-s000000002']);
      const result = await autoprune(['run', '--resume', copy, '--workers', '1'], 'warn');
      assert.equal(result.status, 2, result.stderr);
      assert.ok(result.stderr.includes(join(copy, 'checkpoints', 'p00-s000000002', 'model.safetensors')), result.stderr);
      assert.match(message(result.stderr), /holds no valid checkpoint to resume from/);
    });
  });
});
