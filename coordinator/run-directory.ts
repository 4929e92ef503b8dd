import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint, writeCheckpoint, type Checkpoint } from '../shared/checkpoint.js';
import { configHash, configToYaml, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { writeSafetensorsFile } from '../shared/safetensors.js';
import { countNetwork } from '../worker/engine/counters.js';
import { prunedTensors } from '../worker/engine/export.js';
import type { Network } from '../worker/engine/network.js';
import { REPORT_FILE, type PhaseSummary, type RunReport } from './report.js';

/**
 * A run's output directory: config.resolved.yaml, checkpoint/, and at the end report.json and
 * pruned.safetensors. The same layout whether the run was trained in one process or by many workers.
 */

export const RUN_FILES = {
  config: 'config.resolved.yaml',
  checkpoint: 'checkpoint',
  pruned: 'pruned.safetensors',
  report: REPORT_FILE,
} as const;

export class RunDirectory {
  private constructor(
    readonly path: string,
    private readonly config: RunConfig,
  ) {}

  /** Creates the directory (refusing one that already holds files) and writes the resolved config. */
  static async create(path: string, config: RunConfig): Promise<RunDirectory> {
    await prepareEmptyDirectory(path);
    await writeFile(join(path, RUN_FILES.config), configToYaml(config));
    return new RunDirectory(path, config);
  }

  get checkpointPath(): string {
    return join(this.path, RUN_FILES.checkpoint);
  }

  saveCheckpoint(checkpoint: Checkpoint): Promise<void> {
    return writeCheckpoint(this.checkpointPath, checkpoint);
  }

  /** report.json and pruned.safetensors from the trained network. */
  async writeResults(network: Network, gated: boolean, backend: string, phases: readonly PhaseSummary[]): Promise<RunReport> {
    const count = countNetwork(network, gated);
    const report: RunReport = { model: this.config.model.name, backend, phases, layers: count.layers, totals: count.totals, modelParams: count.modelParams };
    await writeSafetensorsFile(join(this.path, RUN_FILES.pruned), prunedTensors(network, gated), { model: this.config.model.name, configHash: configHash(this.config) });
    await writeFile(join(this.path, RUN_FILES.report), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }
}

/** The checkpoint a dense phase's `init` names (a run directory or its checkpoint directory), checked against the config. */
export async function readInitCheckpoint(config: RunConfig, phaseIndex: number, init: string): Promise<Checkpoint> {
  const inRunDirectory = join(init, RUN_FILES.checkpoint);
  const checkpoint = await readCheckpoint(existsSync(inRunDirectory) ? inRunDirectory : init);
  if (checkpoint.position.model !== config.model.name) {
    throw new InputError(`phases.${phaseIndex}.init`, 'is a checkpoint of another model', { expected: config.model.name, found: checkpoint.position.model });
  }
  return checkpoint;
}

/** Refuses a directory that already holds files, so an earlier run's results are never overwritten. */
async function prepareEmptyDirectory(outDir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(outDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new InputError(outDir, 'cannot use as run directory', { found: (error as NodeJS.ErrnoException).code });
  }
  if (entries.length > 0) {
    throw new InputError(outDir, 'run directory is not empty; refusing to overwrite an earlier run', { expected: 'a new or empty directory (--out)', found: entries.slice(0, 4).join(', ') });
  }
  try {
    await mkdir(outDir, { recursive: true });
  } catch (error) {
    throw new InputError(outDir, 'cannot create run directory', { found: (error as NodeJS.ErrnoException).code ?? String(error) });
  }
}
