import { initBackend } from '../engine/backend.js';
import { loadTrainingData } from '../engine/data/sources.js';
import { disposeNetwork } from '../engine/network.js';
import { type PhaseHooks, type PhaseResult, PhaseRunner } from '../engine/phase-runner.js';
import { createNetwork, createTrainer } from '../engine/setup.js';
import { assignParameters, captureCheckpoint } from '../engine/state.js';
import { configHash, type RunConfig } from '../shared/config.js';
import type { Logger } from '../shared/logging.js';
import type { RunReport } from './report.js';
import { RunDirectory, readInitCheckpoint } from './run-directory.js';

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

export async function runLocal({ config, outDir, logger, hooks = {} }: LocalRunOptions): Promise<RunReport> {
  const runDirectory = await RunDirectory.create(outDir, config, logger);
  const hash = configHash(config);

  const backend = await initBackend(config.backend, (message) => logger.info({ event: 'backend.notice' }, message));
  const data = await loadTrainingData(config.data);
  logger.info({ event: 'run.started', model: config.model.name, backend, train: data.train.count, test: data.test.count, outDir }, 'run started');

  const network = createNetwork(config, data.train);
  try {
    const runner = new PhaseRunner(createTrainer(network, config), config, data);
    const phases: PhaseResult[] = [];
    let gated = false;
    for (const [index, phase] of config.phases.entries()) {
      if (phase.phase === 'dense' && phase.init !== undefined) {
        const checkpoint = await readInitCheckpoint(config, index, phase.init, logger);
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
        const states = new Map([['weights', optimizers.weights.state()]]);
        if (optimizers.aux) states.set('aux', optimizers.aux.state());
        await runDirectory.saveCheckpoint(
          captureCheckpoint(network.parameters, states, {
            phase: phase.phase,
            phaseIndex: index,
            step: result.steps,
            epoch: result.epoch,
            configHash: hash,
            model: config.model.name,
          }),
          {
            worldSize: 1,
            seed: config.seed,
            batchSize: config.batchSize,
            phases: phases.map(({ name, steps, seconds, testAccuracy }) => ({ name, steps, seconds, testAccuracy })),
          },
        );
      } finally {
        optimizers.weights.dispose();
        optimizers.aux?.dispose();
      }
    }
    const report = await runDirectory.writeResults(
      network,
      gated,
      backend,
      phases.map(({ name, steps, seconds, testAccuracy }) => ({ name, steps, seconds, testAccuracy })),
    );
    logger.info({ event: 'run.finished', totals: report.totals, outDir }, 'run finished');
    return report;
  } finally {
    disposeNetwork(network);
  }
}
