import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { type RunReport, readReport } from '../coordinator/report.js';
import { RUN_FILES, RunDirectory } from '../coordinator/run-directory.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { configHash, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { checkRunId } from '../shared/events/run-id.js';
import type { Logger } from '../shared/logging.js';
import { type NewRunOptions, runConfigFrom } from './new-run.js';

/**
 * `--resume-or-start`: what a pod that restarts into the same run directory does. It resumes the run
 * there if there is one to resume, and starts it otherwise, so that the same command line serves the
 * first start and every restart. The window between a start and the first checkpoint (a directory with
 * the run's config but no checkpoint yet) starts the run again in place; a directory holding another
 * config's run is refused, naming both hashes.
 */

/** The option as the commands that take it declare it (cli/command.ts). */
export const RESUME_OR_START_OPTION = {
  type: 'boolean',
  description: 'resumes the run in --out if there is one, else starts it there (the same command line for every pod start)',
} as const;

/** What a run directory holds, as far as the decision goes. */
export interface RunDirectoryContents {
  /** Hash of its config.resolved.yaml, if it has one. */
  readonly storedHash: string | undefined;
  /** report.json is there: the run completed. */
  readonly completed: boolean;
  /** Published checkpoint directories, valid or not. */
  readonly checkpoints: number;
  /** At least one of them passes its checksums. */
  readonly validCheckpoint: boolean;
}

export type ResumeOrStartDecision =
  | { readonly action: 'start' }
  /** The run's config is there, but nothing to resume: the run starts again in the same directory. */
  | { readonly action: 'start-in-place' }
  | { readonly action: 'resume' }
  | { readonly action: 'completed' }
  | { readonly action: 'refuse'; readonly problem: string; readonly expected: string; readonly found: string };

/** Pure: what `--resume-or-start` does with a directory holding `contents`, for a config hashing to `givenHash`. */
export function resumeOrStartDecision(contents: RunDirectoryContents, givenHash: string): ResumeOrStartDecision {
  if (contents.storedHash === undefined) return { action: 'start' };
  if (contents.storedHash !== givenHash)
    return {
      action: 'refuse',
      problem: 'holds a run of another config; refusing to resume or overwrite it',
      expected: `config hash ${givenHash} (the config given)`,
      found: `config hash ${contents.storedHash} (its ${RUN_FILES.config})`,
    };
  if (contents.completed) return { action: 'completed' };
  if (contents.validCheckpoint) return { action: 'resume' };
  if (contents.checkpoints > 0)
    return {
      action: 'refuse',
      problem: 'holds checkpoints, none of which passes its checksums; refusing to start over them',
      expected: 'at least one complete checkpoint to resume from',
      found: `${contents.checkpoints} damaged`,
    };
  return { action: 'start-in-place' };
}

export type ResumedOrStarted =
  | {
      readonly kind: 'run';
      readonly config: RunConfig;
      readonly runId: string;
      readonly runDirectory: RunDirectory;
      readonly resumeFrom: StoredCheckpoint | undefined;
    }
  | { readonly kind: 'completed'; readonly report: RunReport; readonly runDirectory: string };

/**
 * The run that `--resume-or-start` names: `configPath` (with `--set`, `--backend`) in `options.out`, which it
 * requires, since a restarted pod must find the same directory. The run id is `--run-id` or the directory's name,
 * the same on every start.
 */
export async function resumeOrStart(configPath: string, options: NewRunOptions, logger: Logger): Promise<ResumedOrStarted> {
  const out = options.out;
  if (out === undefined) throw new InputError('--resume-or-start', 'needs --out DIR: the run directory a restarted process finds again');
  const config = await runConfigFrom(configPath, options);
  const runId = checkRunId(options.runId ?? basename(resolve(out)).replace(/[^A-Za-z0-9_-]/g, '-'), '--run-id');
  const existing = existsSync(join(out, RUN_FILES.config)) ? await RunDirectory.open(out, logger) : undefined;
  const names = existing ? await existing.checkpoints.list() : [];
  const resumeFrom = names.length > 0 ? await existing!.checkpoints.latest() : undefined;
  const contents: RunDirectoryContents = {
    storedHash: existing && configHash(existing.config),
    completed: existsSync(join(out, RUN_FILES.report)),
    checkpoints: names.length,
    validCheckpoint: resumeFrom !== undefined,
  };
  const decision = resumeOrStartDecision(contents, configHash(config));
  logger.info({ event: 'run.resume-or-start', runDirectory: out, decision: decision.action }, `--resume-or-start: ${decision.action} (${out})`);
  switch (decision.action) {
    case 'refuse':
      throw new InputError(out, decision.problem, { expected: decision.expected, found: decision.found });
    case 'completed':
      return { kind: 'completed', report: await readReport(out), runDirectory: out };
    case 'start':
      return { kind: 'run', config, runId, runDirectory: await RunDirectory.create(out, config, logger), resumeFrom: undefined };
    // The same config by hash: the directory's own is used, as a resume does, and the generation file stays so
    // that generations go on numbering upwards and workers of the earlier start stay fenced out.
    case 'start-in-place':
      return { kind: 'run', config: existing!.config, runId, runDirectory: existing!, resumeFrom: undefined };
    case 'resume':
      return { kind: 'run', config: existing!.config, runId, runDirectory: existing!, resumeFrom };
  }
}
