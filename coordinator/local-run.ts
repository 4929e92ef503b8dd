import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint, writeCheckpoint } from '../shared/checkpoint.js';
import { configHash, configToYaml, granularityOf, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import { writeSafetensorsFile } from '../shared/safetensors.js';
import { initBackend } from '../worker/engine/backend.js';
import { countNetwork } from '../worker/engine/counters.js';
import { prunedTensors } from '../worker/engine/export.js';
import { buildNetwork } from '../worker/engine/models/index.js';
import { disposeNetwork, type Network } from '../worker/engine/network.js';
import { assignParameters, optimizerTensors, parameterTensors } from '../worker/engine/state.js';
import { AutoPruneTrainer } from '../worker/engine/trainer.js';
import { loadTrainingData } from '../worker/data/sources.js';
import { PhaseRunner, type PhaseHooks, type PhaseOptimizers, type PhaseResult } from '../worker/phase-runner.js';
import { REPORT_FILE, type RunReport } from './report.js';

/**
 * A whole run in one process: dense → prune → finetune as the config chains them, then the run
 * directory: config.resolved.yaml, report.json, checkpoint/ and pruned.safetensors.
 */

export interface LocalRunOptions {
  readonly config: RunConfig;
  readonly outDir: string;
  readonly logger: Logger;
  readonly hooks?: PhaseHooks;
}

export const RUN_FILES = {
  config: 'config.resolved.yaml',
  checkpoint: 'checkpoint',
  pruned: 'pruned.safetensors',
  report: REPORT_FILE,
} as const;

export async function runLocal({ config, outDir, logger, hooks = {} }: LocalRunOptions): Promise<RunReport> {
  await prepareRunDirectory(outDir);
  await writeFile(join(outDir, RUN_FILES.config), configToYaml(config));
  const hash = configHash(config);

  const backend = await initBackend(config.backend, (message) => logger.info({ event: 'backend.notice' }, message));
  const data = await loadTrainingData(config.data);
  logger.info({ event: 'run.started', model: config.model.name, backend, train: data.train.count, test: data.test.count, outDir }, 'run started');

  const network = createNetwork(config, data.train);
  try {
    const trainer = new AutoPruneTrainer(network, {
      surrogate: config.prune.surrogate,
      auxGradient: config.prune.auxGradient,
      mu: config.prune.mu,
      nRatio: config.prune.nRatio,
      closedWeights: config.prune.closedWeights,
    });
    const runner = new PhaseRunner(trainer, config, data);
    const phases: PhaseResult[] = [];
    let gated = false;
    for (const [index, phase] of config.phases.entries()) {
      if (phase.phase === 'dense' && phase.init !== undefined) {
        // `init` may name a run directory or its checkpoint directory.
        const inRunDirectory = join(phase.init, RUN_FILES.checkpoint);
        const checkpoint = await readCheckpoint(existsSync(inRunDirectory) ? inRunDirectory : phase.init);
        if (checkpoint.position.model !== config.model.name) {
          throw new InputError(`phases.${index}.init`, 'is a checkpoint of another model', { expected: config.model.name, found: checkpoint.position.model });
        }
        assignParameters(network.parameters, checkpoint.parameters, phase.init, ['aux']);
        logger.info({ event: 'checkpoint.loaded', from: phase.init, phase: checkpoint.position.phase }, 'initialised from checkpoint');
      }
      logger.info({ event: 'phase', phase: phase.phase, index, steps: phase.steps }, `phase ${phase.phase} started`);
      const optimizers = PhaseRunner.createOptimizers(phase);
      try {
        const result = await runner.run(phase, index, optimizers, hooks);
        phases.push(result);
        gated = phase.phase !== 'dense';
        const { name: finished, ...figures } = result;
        logger.info({ event: 'phase.finished', phase: finished, ...figures }, `phase ${finished} finished`);
        await saveCheckpoint(join(outDir, RUN_FILES.checkpoint), network, optimizers, {
          phase: phase.phase,
          phaseIndex: index,
          step: result.steps,
          epoch: result.epoch,
          configHash: hash,
          model: config.model.name,
        });
      } finally {
        optimizers.weights.dispose();
        optimizers.aux?.dispose();
      }
    }

    const count = countNetwork(network, gated);
    const report: RunReport = {
      model: config.model.name,
      backend,
      phases: phases.map(({ name, steps, seconds, testAccuracy }) => ({ name, steps, seconds, testAccuracy })),
      layers: count.layers,
      totals: count.totals,
      modelParams: count.modelParams,
    };
    await writeSafetensorsFile(join(outDir, RUN_FILES.pruned), prunedTensors(network, gated), { model: config.model.name, configHash: hash });
    await writeFile(join(outDir, RUN_FILES.report), `${JSON.stringify(report, null, 2)}\n`);
    logger.info({ event: 'run.finished', totals: report.totals, outDir }, 'run finished');
    return report;
  } finally {
    disposeNetwork(network);
  }
}

/** Refuses a directory that already holds files, so an earlier run's results are never overwritten. */
async function prepareRunDirectory(outDir: string): Promise<void> {
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

/** Builds the configured network for the dataset's image shape, checking per-layer granularity keys. */
export function createNetwork(config: RunConfig, train: { height: number; width: number; channels: number; numClasses: number }): Network {
  const network = buildNetwork(config.model.name, {
    seed: config.seed,
    inputShape: [train.height, train.width, train.channels],
    numClasses: train.numClasses,
    granularityOf: (layer) => granularityOf(config, layer),
    maskInit: config.prune.maskInit,
    ...(config.model.dropout === undefined ? {} : { dropout: config.model.dropout }),
  });
  const names = new Set(network.maskedLayers.map((l) => l.name));
  for (const key of Object.keys(config.model.layers)) {
    if (!names.has(key)) {
      disposeNetwork(network);
      throw new InputError(`model.layers.${key}`, `is not a prunable layer of ${config.model.name}`, { expected: `one of ${[...names].slice(0, 12).join(', ')}${names.size > 12 ? ', ...' : ''}` });
    }
  }
  return network;
}

async function saveCheckpoint(dir: string, network: Network, optimizers: PhaseOptimizers, position: Parameters<typeof writeCheckpoint>[1]['position']): Promise<void> {
  const stored = new Map([['weights', optimizerTensors(optimizers.weights.state())]]);
  if (optimizers.aux) stored.set('aux', optimizerTensors(optimizers.aux.state()));
  await writeCheckpoint(dir, { position, parameters: parameterTensors(network.parameters), optimizers: stored });
}
