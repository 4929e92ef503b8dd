import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { countNetwork } from '../engine/counters.js';
import { prunedTensors } from '../engine/export.js';
import type { Network } from '../engine/network.js';
import { createDirectories, fileSystemError, writeFileAtomic } from '../shared/atomic-file.js';
import type { Checkpoint } from '../shared/checkpoint.js';
import { CheckpointStore, readVerifiedCheckpoint, type StoredCheckpoint } from '../shared/checkpoint-store.js';
import { configHash, configToYaml, loadConfig, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import { writeSafetensorsFile } from '../shared/safetensors.js';
import type { DataReport } from './bad-samples.js';
import { type PhaseSummary, REPORT_FILE, type RunReport } from './report.js';
import { RUN_LOG_FILES } from './run-log.js';

/**
 * A run's output directory: config.resolved.yaml, checkpoint/, events.jsonl and tensorboard/ (run-log.ts),
 * and at the end report.json and pruned.safetensors. The same layout whether the run was trained in one process or by many workers.
 */

export const RUN_FILES = {
  config: 'config.resolved.yaml',
  generation: 'generation',
  checkpoints: 'checkpoints',
  pruned: 'pruned.safetensors',
  report: REPORT_FILE,
  events: RUN_LOG_FILES.events,
  tensorboard: RUN_LOG_FILES.tensorboard,
} as const;

export class RunDirectory {
  readonly checkpoints: CheckpointStore;

  private constructor(
    readonly path: string,
    readonly config: RunConfig,
    logger: Logger | undefined,
  ) {
    this.checkpoints = new CheckpointStore(join(path, RUN_FILES.checkpoints), config.checkpoint.keep, logger);
  }

  /** Creates the directory (refusing one that holds an earlier run's progress) and writes the resolved config. */
  static async create(path: string, config: RunConfig, logger?: Logger): Promise<RunDirectory> {
    await prepareRunDirectory(path);
    await writeFileAtomic(join(path, RUN_FILES.config), configToYaml(config));
    return new RunDirectory(path, config, logger);
  }

  /** Opens an existing run directory to resume it, with the config it was started with. */
  static async open(path: string, logger?: Logger): Promise<RunDirectory> {
    const config = await loadConfig(join(path, RUN_FILES.config));
    return new RunDirectory(path, config, logger);
  }

  /** Writes a checkpoint with the run state beside it; the previous ones stay intact if this fails. */
  saveCheckpoint(checkpoint: Checkpoint, run: Record<string, unknown>): Promise<string> {
    return this.checkpoints.save(checkpoint, run);
  }

  /** Records the newest generation number, so that a coordinator resuming the run numbers above it. */
  recordGeneration(generation: number): Promise<void> {
    return writeFileAtomic(join(this.path, RUN_FILES.generation), `${generation}\n`);
  }

  /** The newest generation number recorded (0 when none was). */
  async lastGeneration(): Promise<number> {
    let text: string;
    try {
      text = await readFile(join(this.path, RUN_FILES.generation), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw fileSystemError(join(this.path, RUN_FILES.generation), 'read the generation number', error);
    }
    const generation = Number(text.trim());
    if (!Number.isSafeInteger(generation) || generation < 0)
      throw new InputError(join(this.path, RUN_FILES.generation), 'is not a generation number', { found: JSON.stringify(text.trim()) });
    return generation;
  }

  /** report.json and pruned.safetensors from the trained network. */
  async writeResults(network: Network, gated: boolean, backend: string, phases: readonly PhaseSummary[], data?: DataReport): Promise<RunReport> {
    const count = await countNetwork(network, gated);
    const report: RunReport = {
      model: this.config.model.name,
      backend,
      phases,
      layers: count.layers,
      totals: count.totals,
      modelParams: count.modelParams,
      ...(data ? { data } : {}),
    };
    await writeSafetensorsFile(join(this.path, RUN_FILES.pruned), await prunedTensors(network, gated), {
      model: this.config.model.name,
      configHash: configHash(this.config),
    });
    await writeFile(join(this.path, RUN_FILES.report), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }
}

/**
 * The checkpoint a dense phase's `init` names, checked against the config: a run directory (its newest
 * valid checkpoint) or one checkpoint directory (verified against its manifest like any other).
 */
export async function readInitCheckpoint(config: RunConfig, phaseIndex: number, init: string, logger?: Logger): Promise<Checkpoint> {
  let stored: StoredCheckpoint | undefined;
  if (existsSync(join(init, RUN_FILES.checkpoints))) {
    stored = await new CheckpointStore(join(init, RUN_FILES.checkpoints), 1, logger).latest();
    if (!stored) throw new InputError(`phases.${phaseIndex}.init`, `run directory ${init} holds no valid checkpoint`);
  }
  const checkpoint = (stored ?? (await readVerifiedCheckpoint(init))).checkpoint;
  if (checkpoint.position.model !== config.model.name) {
    throw new InputError(`phases.${phaseIndex}.init`, 'is a checkpoint of another model', { expected: config.model.name, found: checkpoint.position.model });
  }
  return checkpoint;
}

/** What a run leaves before its first checkpoint: a directory holding only these has no progress to lose. */
const WITHOUT_PROGRESS: ReadonlySet<string> = new Set([RUN_FILES.config, RUN_FILES.generation, RUN_FILES.events, RUN_FILES.tensorboard]);
/** Of those, what a new run must not inherit: the generation numbers and the failed run's events. */
const TAKEN_OVER: readonly string[] = [RUN_FILES.generation, RUN_FILES.events, RUN_FILES.tensorboard];

/**
 * Makes `outDir` ready for a new run. A directory with an earlier run's progress (checkpoints, results) is
 * refused, so that it is never overwritten; one left by a run that failed before its first checkpoint is
 * taken over.
 */
async function prepareRunDirectory(outDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(outDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileSystemError(outDir, 'use it as the run directory', error);
    try {
      await createDirectories(outDir);
    } catch (error) {
      throw fileSystemError(outDir, 'create the run directory', error);
    }
    return;
  }
  const progress = entries.filter((entry) => !WITHOUT_PROGRESS.has(entry));
  if (progress.length > 0) {
    throw new InputError(outDir, 'run directory is not empty; refusing to overwrite an earlier run', {
      expected: 'a new or empty directory (--out), or one whose run failed before its first checkpoint',
      found: progress.slice(0, 4).join(', '),
    });
  }
  // A new run numbers its generations afresh and logs only its own events.
  for (const entry of TAKEN_OVER.filter((e) => entries.includes(e))) {
    try {
      await rm(join(outDir, entry), { recursive: true });
    } catch (error) {
      throw fileSystemError(join(outDir, entry), 'remove what the failed run left', error);
    }
  }
}
