import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from './errors.js';

/** Plain-words reasons for the OS errors a user can fix (permissions, space, a wrong path). */
const OS_ERROR_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a parent of the path is not a directory',
  EISDIR: 'the path is a directory',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
};

/**
 * Turns an OS error from a file operation into an InputError naming the path and the reason;
 * anything else (a bug, such as a TypeError) is returned unchanged so that it keeps its stack.
 */
export function fileSystemError(path: string, action: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    const reason = OS_ERROR_REASONS[code] ?? (error as Error).message;
    return new InputError(path, `cannot ${action}: ${reason} (${code})`);
  }
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Writes `data` to `path` so that readers (and a crash at any moment) see either the old file
 * or the complete new one, never a partial write: the data goes to a temporary file in the same
 * directory (rename is only atomic within a file system), is flushed to disk, and then renamed
 * over the target. On failure the temporary file is removed and the old target is left alone.
 */
export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  const directory = dirname(resolve(path));
  const temporaryPath = join(directory, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(temporaryPath, 'wx');
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporaryPath, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(temporaryPath, { force: true }).catch(() => undefined);
    throw fileSystemError(path, 'write file', error);
  }
  await syncDirectory(directory, path);
}

/** Flushes a directory's entries so that a rename in it survives a power loss; `path` names it in errors. */
export async function syncDirectory(directory: string, path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the data itself is already on disk then.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw fileSystemError(path, 'sync its directory', error);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * Creates a directory and any missing parents, failing with the real cause: Node's recursive mkdir says
 * ENOENT where a parent cannot be made (a read-only file system), so each one is made in turn.
 */
export async function createDirectories(path: string): Promise<void> {
  const parent = dirname(path);
  if (parent !== path && !existsSync(parent)) await createDirectories(parent);
  try {
    await mkdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/** The SHA-256 of a file's contents as lowercase hex, read as a stream so large files are fine. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (error) {
    throw fileSystemError(path, 'read file', error);
  }
  return hash.digest('hex');
}
