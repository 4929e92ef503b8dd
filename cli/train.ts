import { parseArgs } from 'node:util';
import { formatReport } from '../coordinator/report.js';
import { BACKENDS } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { InProcessEventBus } from '../shared/events/in-process-bus.js';
import { openEventPublisher } from '../shared/events/open-publisher.js';
import { RunFailed } from './distributed.js';
import { newRun } from './new-run.js';
import { interactiveLogger, progressReporter, showProgress } from './progress.js';
import { runWorldOfOne } from './world-of-one.js';

export const TRAIN_USAGE = `  autoprune train <config.yaml> [--out DIR] [--backend ${BACKENDS.join('|')}] [--set key.path=value ...]
      one run in this process, as \`run\` with one worker: dense → prune → finetune as the config says;
      writes DIR (default runs/<config name>-<timestamp>)`;

/** `autoprune train`: a run of one worker, all in this process. */
export async function train(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string' }, backend: { type: 'string' }, set: { type: 'string', multiple: true } },
  });
  if (positionals.length !== 1) throw new InputError('autoprune train', 'expects exactly one config file', { found: `${positionals.length} arguments` });
  const { logger, interactive } = interactiveLogger('autoprune');
  const { config, runId, runDirectory } = await newRun(positionals[0]!, values, logger);
  const bus = new InProcessEventBus();
  const events = await openEventPublisher({ runId, bus });
  const subscription = await bus.subscribe(runId);
  const progress = progressReporter(logger, interactive);
  const display = showProgress(subscription, progress);
  try {
    const outcome = await runWorldOfOne({ config, runId, runDirectory, events, logger });
    await subscription.close();
    await display;
    progress.stop();
    if (outcome.status === 'failed') throw new RunFailed(outcome.reason ?? 'unknown reason', outcome.runDirectory);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${runDirectory.path}\n`);
  } finally {
    // Clear the bar before anything else is printed, also when the run fails.
    progress.stop();
    await subscription.close();
    await events.close();
  }
}
