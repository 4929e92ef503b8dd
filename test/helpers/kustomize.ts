import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * `kubectl kustomize` (kustomize as kubectl embeds it) for the manifest tests. Debian bookworm's own
 * kubernetes-client is too old for these Job fields, so kubectl cannot be installed from there: where it
 * is not on PATH the tests that need it say so and skip.
 */

export function kubectlMissing(): string | undefined {
  const found = (process.env.PATH ?? '').split(':').some((directory) => directory && existsSync(join(directory, 'kubectl')));
  return found ? undefined : 'kubectl (1.32 or newer, with kustomize) is not on PATH, and no Debian package here is new enough to install';
}

/** The objects `kubectl kustomize <directory>` builds, parsed. */
export function kustomize(directory: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', ['kustomize', directory], { timeout: 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`kubectl kustomize ${directory} failed: ${stderr || error.message}`));
      resolve(parseAllDocuments(stdout).map((document) => document.toJS() as Record<string, unknown>));
    });
  });
}
