import { formatReport } from '../coordinator/report.js';
import { InputError } from '../shared/errors.js';
import { InProcessEventBus } from '../shared/events/in-process-bus.js';
import { openEventPublisher } from '../shared/events/open-publisher.js';
import { LogContext } from '../shared/logging.js';
import { CLUSTER_OPTIONS, gracePeriodFrom } from './cluster-options.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { RunFailed, runFailure } from './distributed.js';
import { NEW_RUN_OPTIONS, newRun } from './new-run.js';
import { interactiveLogger, progressReporter, showProgress } from './progress.js';
import { RESUME_OR_START_OPTION, resumeOrStart } from './resume-or-start.js';
import { handleStopSignals } from './signals.js';
import { runWorldOfOne } from './world-of-one.js';

export const TRAIN_COMMAND = defineCommand({
  name: 'train',
  summary: 'a run in this process (one worker): dense, prune, finetune as the config says',
  usage: ['train <config.yaml> [--out DIR] [--backend B] [--set key.path=value ...] [--resume-or-start] [--grace-period DURATION]'],
  description:
    'Trains in this process, as `run` with one worker: the phases the config lists, checkpoints, TensorBoard\n' +
    'logs, events.jsonl and at the end report.json and pruned.safetensors in the run directory. SIGTERM and\n' +
    'SIGINT write a final checkpoint within the grace period, then exit 143 / 130.',
  arguments: [{ name: '<config.yaml>', description: 'the run config (see README: Configuration)' }],
  options: {
    ...NEW_RUN_OPTIONS,
    'resume-or-start': RESUME_OR_START_OPTION,
    'grace-period': CLUSTER_OPTIONS['grace-period'],
  },
  examples: ['train examples/quickstart-mnist.yaml --out runs/quickstart --set phases.0.steps=100'],
});

/** `autoprune train`: a run of one worker, all in this process. */
export async function train(args: string[]): Promise<void> {
  const parsed = parseCommand(TRAIN_COMMAND, args);
  if (parsed.help) return printHelp(TRAIN_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new InputError('autoprune train', 'expects exactly one config file', { found: `${positionals.length} arguments` });
  const logContext = new LogContext();
  const { logger, interactive } = interactiveLogger('autoprune', logContext);
  const graceMs = gracePeriodFrom(values);
  const found = values['resume-or-start']
    ? await resumeOrStart(positionals[0]!, values, logger)
    : { kind: 'run' as const, ...(await newRun(positionals[0]!, values, logger)) };
  if (found.kind === 'completed') {
    process.stdout.write(`${formatReport(found.report)}\n\nrun directory: ${found.runDirectory} (already completed; nothing to do)\n`);
    return;
  }
  const { config, runId, runDirectory } = found;
  const bus = new InProcessEventBus();
  const events = await openEventPublisher({ runId, bus });
  const subscription = await bus.subscribe(runId);
  const progress = progressReporter(logger, interactive);
  const display = showProgress(subscription, progress);
  const stop = new AbortController();
  const signals = handleStopSignals(graceMs, logger, (signal) => stop.abort(signal));
  try {
    const resumeFrom = 'resumeFrom' in found ? found.resumeFrom : undefined;
    const outcome = await runWorldOfOne({
      config,
      runId,
      runDirectory,
      events,
      logger,
      resumeFrom,
      stop: { signal: stop.signal, offerWaitMs: graceMs / 2 },
      logContext,
    });
    await subscription.close();
    await display;
    progress.stop();
    if (outcome.status === 'failed')
      throw outcome.interrupted ? runFailure(outcome, signals.received) : new RunFailed(outcome.reason ?? 'unknown reason', outcome.runDirectory);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${runDirectory.path}\n`);
  } finally {
    // Clear the bar before anything else is printed, also when the run fails.
    progress.stop();
    await subscription.close();
    await events.close();
    signals.dispose();
  }
}
