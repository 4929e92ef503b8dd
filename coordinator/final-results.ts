import { datasetShape } from '../engine/data/sources.js';
import { disposeNetwork } from '../engine/network.js';
import { createNetwork } from '../engine/setup.js';
import { assignParameters } from '../engine/state.js';
import type { Checkpoint } from '../shared/checkpoint.js';
import type { RunConfig } from '../shared/config.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import type { DataReport } from './bad-samples.js';
import type { PhaseSummary, RunReport } from './report.js';
import type { RunDirectory } from './run-directory.js';

export interface FinalResultsOptions {
  readonly config: RunConfig;
  readonly runDirectory: RunDirectory;
  readonly events: EventPublisher;
  readonly logger: Logger;
  /** The run's final state. */
  readonly state: Checkpoint;
  /** The backends the last generation trained on. */
  readonly backend: string;
  readonly phases: readonly PhaseSummary[];
  /** The run's duration so far, in seconds, once the results are written. */
  readonly seconds: () => number;
  /** The samples left out as bad, for a dataset read from files (ImageNet). */
  readonly data: DataReport | undefined;
}

/**
 * A distributed run's results from its final state: the coordinator assembles the network (on the plain
 * JavaScript backend), counts it, writes report.json and pruned.safetensors into the run directory, and
 * announces the run's end (`run.finished`).
 */
export async function writeFinalResults(options: FinalResultsOptions): Promise<RunReport> {
  const { config, runDirectory, events, logger, phases } = options;
  const network = createNetwork(config, datasetShape(config.data));
  let report: RunReport;
  try {
    assignParameters(network.parameters, options.state.parameters, 'final state');
    const gated = config.phases.some((p) => p.phase !== 'dense');
    report = await runDirectory.writeResults(network, gated, options.backend, phases, options.data);
  } finally {
    disposeNetwork(network);
  }
  const testAccuracy = phases[phases.length - 1]?.testAccuracy ?? 0;
  events.publish('run.finished', { compression: report.totals.compression, testAccuracy, seconds: options.seconds() });
  logger.info({ event: 'run.finished', totals: report.totals, outDir: runDirectory.path }, 'run finished');
  return report;
}
