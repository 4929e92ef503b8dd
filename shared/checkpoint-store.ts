import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createDirectories, fileSystemError, sha256File, syncDirectory, writeFileAtomic } from './atomic-file.js';
import { type Checkpoint, readCheckpoint, writeCheckpointFiles } from './checkpoint.js';
import { describeValue, InputError } from './errors.js';
import type { Logger } from './logging.js';

/**
 * A run's checkpoints: one directory each under `checkpoints/`, named by position so that names sort in
 * run order, each with a manifest.json holding the sha256 of every file. A checkpoint is written under a
 * temporary name, flushed, then renamed into place, so a crash leaves either nothing or a whole one; the
 * newest `keep` are kept. Reading takes the newest checkpoint whose files match their checksums and warns,
 * naming the file, about every newer one that does not.
 */

export const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 'autoprune-checkpoint-manifest/1';
const STAGING_PREFIX = '.staging-';

export interface CheckpointManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly createdAt: string;
  readonly files: Readonly<Record<string, { readonly sha256: string; readonly bytes: number }>>;
  /** Run state beside the tensors (world size, stream cursors, seed, finished phases...), as the writer gives it. */
  readonly run: Readonly<Record<string, unknown>>;
}

export interface StoredCheckpoint {
  readonly path: string;
  readonly checkpoint: Checkpoint;
  readonly manifest: CheckpointManifest;
}

export function checkpointName(phaseIndex: number, step: number): string {
  return `p${String(phaseIndex).padStart(2, '0')}-s${String(step).padStart(9, '0')}`;
}

export class CheckpointStore {
  constructor(
    readonly dir: string,
    private readonly keep: number,
    private readonly logger?: Logger,
  ) {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`a checkpoint store keeps at least 1 checkpoint, not ${keep}`);
  }

  /** Writes `checkpoint` as the newest; the previous ones stay intact whatever happens. Returns its path. */
  async save(checkpoint: Checkpoint, run: Record<string, unknown>): Promise<string> {
    const name = checkpointName(checkpoint.position.phaseIndex, checkpoint.position.step);
    const staging = join(this.dir, `${STAGING_PREFIX}${name}`);
    const target = join(this.dir, name);
    try {
      await createDirectories(this.dir);
      await rm(staging, { recursive: true, force: true });
      await mkdir(staging);
    } catch (error) {
      throw fileSystemError(staging, 'create a checkpoint directory', error);
    }
    try {
      const files: Record<string, { sha256: string; bytes: number }> = {};
      for (const file of await writeCheckpointFiles(staging, checkpoint)) {
        const path = join(staging, file);
        files[file] = { sha256: await sha256File(path), bytes: (await stat(path)).size };
      }
      const manifest: CheckpointManifest = { format: MANIFEST_FORMAT, createdAt: new Date().toISOString(), files, run };
      await writeFileAtomic(join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await rm(target, { recursive: true, force: true });
      await rename(staging, target);
      await syncDirectory(this.dir, target);
    } catch (error) {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw error instanceof InputError ? error : fileSystemError(target, 'write the checkpoint', error);
    }
    await this.prune();
    return target;
  }

  /** Names of the published checkpoints, oldest first. */
  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fileSystemError(this.dir, 'list checkpoints', error);
    }
    return entries.filter((e) => /^p\d{2}-s\d{9}$/.test(e)).sort();
  }

  /** The newest checkpoint that passes its checksums, or undefined when there is none. */
  async latest(): Promise<StoredCheckpoint | undefined> {
    for (const name of (await this.list()).reverse()) {
      const path = join(this.dir, name);
      try {
        return await readVerifiedCheckpoint(path);
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        this.logger?.warn({ event: 'checkpoint.invalid', path, problem: error.message }, `skipping checkpoint ${name}: ${error.message}`);
      }
    }
    return undefined;
  }

  private async prune(): Promise<void> {
    const names = await this.list();
    for (const name of names.slice(0, Math.max(0, names.length - this.keep))) {
      await rm(join(this.dir, name), { recursive: true, force: true }).catch((error: unknown) =>
        this.logger?.warn({ event: 'checkpoint.prune-failed', name, error: String(error) }, `could not remove old checkpoint ${name}`),
      );
    }
  }
}

/** Reads one checkpoint directory after checking every file its manifest lists; an unlisted file is refused. */
export async function readVerifiedCheckpoint(path: string): Promise<StoredCheckpoint> {
  const manifestPath = join(path, MANIFEST_FILE);
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as CheckpointManifest;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InputError(manifestPath, code ? `cannot read the manifest (${code})` : `the manifest is not valid JSON: ${(error as Error).message}`);
  }
  if (manifest?.format !== MANIFEST_FORMAT || typeof manifest.files !== 'object' || manifest.files === null) {
    throw new InputError(manifestPath, 'is not a checkpoint manifest', { expected: `format ${MANIFEST_FORMAT}`, found: describeValue(manifest?.format) });
  }
  for (const [file, expected] of Object.entries(manifest.files)) {
    if (basename(file) !== file || typeof expected?.sha256 !== 'string')
      throw new InputError(manifestPath, `has a bad entry for ${JSON.stringify(file)}`, { expected: 'a file name in the directory with its sha256' });
    const filePath = join(path, file);
    let actual: string;
    try {
      actual = await sha256File(filePath);
    } catch (error) {
      throw error instanceof InputError ? error : new InputError(filePath, 'cannot be read');
    }
    if (actual !== expected.sha256)
      throw new InputError(filePath, 'does not match its checksum in the manifest (corrupt or partly written)', {
        expected: expected.sha256.slice(0, 16),
        found: actual.slice(0, 16),
      });
  }
  return { path, checkpoint: await readCheckpoint(path, new Set(Object.keys(manifest.files))), manifest };
}
