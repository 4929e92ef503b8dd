import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256File, writeFileAtomic } from '../../shared/atomic-file.js';
import { InputError } from '../../shared/errors.js';
import { skipBecause } from '../helpers/skip.js';

const ATOMIC_FILE_MODULE = fileURLToPath(new URL('../../shared/atomic-file.js', import.meta.url));

function assertInputErrorFor(path: string, code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof InputError, `expected an InputError, got ${String(error)}`);
    assert.ok(error.message.startsWith(`${path}: cannot write file: `), error.message);
    assert.ok(error.message.includes(`(${code})`), error.message);
    return true;
  };
}

describe('writeFileAtomic', () => {
  let directory: string;
  let target: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'autoprune-atomic-'));
    target = join(directory, 'model.bin');
  });
  afterEach(async () => {
    await chmod(directory, 0o700);
    await rm(directory, { recursive: true, force: true });
  });

  async function assertOldContentAndNoTemporaryFiles(): Promise<void> {
    assert.equal(await readFile(target, 'utf8'), 'old content');
    assert.deepEqual(await readdir(directory), ['model.bin']);
  }

  it('creates a file and leaves nothing else behind', async () => {
    await writeFileAtomic(target, Buffer.from([1, 2, 3]));
    assert.deepEqual([...(await readFile(target))], [1, 2, 3]);
    assert.deepEqual(await readdir(directory), ['model.bin']);
  });

  it('replaces an existing file, from a string too', async () => {
    await writeFile(target, 'old content');
    await writeFileAtomic(target, 'new content ✓');
    assert.equal(await readFile(target, 'utf8'), 'new content ✓');
    assert.deepEqual(await readdir(directory), ['model.bin']);
  });

  it('keeps the old file when the write runs out of room (file size limit), as any user', async () => {
    // RLIMIT_FSIZE stops the write with EFBIG like a full disk would, and root is not exempt.
    // Ignoring SIGXFSZ makes the write fail with an error instead of killing the process.
    await writeFile(target, 'old content');
    const child = [
      `const { writeFileAtomic } = await import(${JSON.stringify(ATOMIC_FILE_MODULE)});`,
      `await writeFileAtomic(${JSON.stringify(target)}, Buffer.alloc(64 * 1024, 1)).then(`,
      `  () => console.log('written'), (error) => console.log(error.name + ': ' + error.message));`,
    ].join('\n');
    const result = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 1; exec "${process.execPath}" --input-type=module -e "$0"`, child], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), `InputError: ${target}: cannot write file: file too large (EFBIG)`);
    await assertOldContentAndNoTemporaryFiles();
  });

  it('keeps the old file and removes the temporary one when writing the data fails', async () => {
    await writeFile(target, 'old content');
    // Not an OS error but a bug in the caller: it must come through unchanged, with its stack.
    await assert.rejects(writeFileAtomic(target, 42 as unknown as string), (error: unknown) => {
      assert.ok(!(error instanceof InputError) && error instanceof TypeError);
      return true;
    });
    await assertOldContentAndNoTemporaryFiles();
  });

  it('keeps the old file in a read-only directory (not meaningful as root)', async function () {
    if (process.getuid?.() === 0) skipBecause(this, 'running as root, whom directory permissions do not stop');
    await writeFile(target, 'old content');
    await chmod(directory, 0o500);
    await assert.rejects(writeFileAtomic(target, 'new'), assertInputErrorFor(target, 'EACCES'));
    await chmod(directory, 0o700);
    await assertOldContentAndNoTemporaryFiles();
  });

  it('leaves a directory in the way intact and cleans up', async () => {
    await mkdir(target);
    await assert.rejects(writeFileAtomic(target, 'new'), assertInputErrorFor(target, 'EISDIR'));
    assert.deepEqual(await readdir(directory), ['model.bin']);
    assert.deepEqual(await readdir(target), []);
  });

  it('reports a missing directory or a parent that is a file', async () => {
    const inMissingDirectory = join(directory, 'missing', 'model.bin');
    await assert.rejects(writeFileAtomic(inMissingDirectory, 'x'), assertInputErrorFor(inMissingDirectory, 'ENOENT'));
    await writeFile(join(directory, 'file'), 'x');
    const underAFile = join(directory, 'file', 'model.bin');
    await assert.rejects(writeFileAtomic(underAFile, 'x'), assertInputErrorFor(underAFile, 'ENOTDIR'));
  });
});

describe('sha256File', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'autoprune-sha-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('hashes small and multi-chunk files', async () => {
    const small = join(directory, 'abc');
    await writeFile(small, 'abc');
    assert.equal(await sha256File(small), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const large = join(directory, 'large');
    const content = Buffer.alloc(300_000).map((_, i) => (i * 31) & 0xff);
    await writeFile(large, content);
    assert.equal(await sha256File(large), createHash('sha256').update(content).digest('hex'));
  });

  it('names a missing file', async () => {
    const missing = join(directory, 'missing');
    await assert.rejects(sha256File(missing), (error: unknown) => {
      assert.ok(error instanceof InputError);
      assert.match(error.message, new RegExp(`^${missing}: cannot read file: no such file or directory \\(ENOENT\\)`));
      return true;
    });
  });
});
