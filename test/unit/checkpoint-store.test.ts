import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Checkpoint } from '../../shared/checkpoint.js';
import { CheckpointStore, readVerifiedCheckpoint } from '../../shared/checkpoint-store.js';
import { InputError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { skipBecause } from '../helpers/skip.js';

function checkpointAt(step: number): Checkpoint {
  const values = Float32Array.from({ length: 64 }, (_, i) => i * 0.5 + step);
  return {
    position: { phase: 'prune', phaseIndex: 1, step, epoch: 0, configHash: 'abc', model: 'lenet300' },
    parameters: new Map([['fc1.weight', { dtype: 'F32', shape: [8, 8], data: values }]]),
    optimizers: new Map([['weights', { step, tensors: new Map([['fc1.weight/momentum', { dtype: 'F32', shape: [8, 8], data: values.map((v) => -v) }]]) }]]),
  };
}

/** A logger that records warnings, to check what the store says about bad checkpoints. */
function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger = { warn: (_: unknown, message: string) => warnings.push(message) } as unknown as Logger;
  return { logger, warnings };
}

/** Makes a directory immutable (even to root) with chattr; says why not where it cannot (no chattr, a file system without attributes). */
function setImmutable(path: string, on: boolean): string | undefined {
  const result = spawnSync('chattr', [on ? '+i' : '-i', path], { encoding: 'utf8' });
  if (result.status === 0) return undefined;
  return `chattr ${on ? '+i' : '-i'} failed: ${result.error?.message ?? result.stderr.trim()}`;
}

describe('checkpoint store', () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), 'autoprune-ckpt-')), 'checkpoints');
  });

  it('keeps the newest `keep` checkpoints, each with a manifest of sha256 sums, and reads back the newest', async () => {
    const store = new CheckpointStore(dir, 3);
    for (const step of [4, 8, 12, 16]) await store.save(checkpointAt(step), { worldSize: 2 });
    assert.deepEqual(await store.list(), ['p01-s000000008', 'p01-s000000012', 'p01-s000000016']);
    const latest = (await store.latest())!;
    assert.equal(latest.checkpoint.position.step, 16);
    assert.equal(latest.manifest.run.worldSize, 2);
    assert.deepEqual(Object.keys(latest.manifest.files).sort(), ['model.safetensors', 'optimizer.weights.safetensors']);
    assert.match(latest.manifest.files['model.safetensors']!.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(latest.checkpoint.parameters.get('fc1.weight')!.data, checkpointAt(16).parameters.get('fc1.weight')!.data);
    assert.equal(latest.checkpoint.optimizers.get('weights')!.step, 16);
  });

  it('falls back to the previous checkpoint when the newest is corrupt or partial, naming the bad file', async () => {
    const { logger, warnings } = recordingLogger();
    const store = new CheckpointStore(dir, 3, logger);
    await store.save(checkpointAt(4), {});
    const newest = await store.save(checkpointAt(8), {});
    const model = join(newest, 'model.safetensors');
    const bytes = readFileSync(model);
    bytes[bytes.length - 3]! ^= 0xff;
    writeFileSync(model, bytes);
    const latest = (await store.latest())!;
    assert.equal(latest.checkpoint.position.step, 4);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /p01-s000000008.*model\.safetensors: does not match its checksum/);
    await assert.rejects(readVerifiedCheckpoint(newest), /does not match its checksum/);

    // A checkpoint cut off before its manifest was written is no checkpoint either.
    mkdirSync(join(dir, 'p01-s000000012'));
    assert.equal((await store.latest())!.checkpoint.position.step, 4);
    assert.match(warnings[1]!, /p01-s000000012.*manifest.json: cannot read the manifest \(ENOENT\)/);
  });

  it('reports a directory it cannot write as a clear error and leaves the previous checkpoint intact', async function () {
    const store = new CheckpointStore(dir, 3);
    const first = await store.save(checkpointAt(4), {});
    const cannot = setImmutable(dir, true);
    if (cannot) skipBecause(this, `cannot make a directory immutable here (${cannot})`);
    try {
      await assert.rejects(
        store.save(checkpointAt(8), {}),
        (error: Error) => error instanceof InputError && error.message.includes(dir) && /operation not permitted \(EPERM\)/.test(error.message),
      );
    } finally {
      setImmutable(dir, false);
    }
    assert.deepEqual(await store.list(), ['p01-s000000004']);
    assert.equal((await readVerifiedCheckpoint(first)).checkpoint.position.step, 4);
  });

  it('says where when the checkpoint directory is not a directory', async () => {
    writeFileSync(join(dir, '..', 'blocker'), 'a file');
    const store = new CheckpointStore(join(dir, '..', 'blocker', 'checkpoints'), 1);
    await assert.rejects(store.save(checkpointAt(4), {}), /blocker.*cannot create a checkpoint directory: a parent of the path is not a directory \(ENOTDIR\)/);
  });
});
