import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunConfig } from '../shared/config.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { RunEvent, RunEventData, RunEventName } from '../shared/events/types.js';
import type { Logger } from '../shared/logging.js';
import { EventFile } from './tensorboard/event-file.js';
import { globalStep, INITIAL_SUMMARY_STATE, type SummaryState, summariesOf } from './tensorboard/run-summaries.js';

/**
 * The run's events kept in its run directory, by the coordinator, its single writer: every event as a JSON
 * line in events.jsonl (what `autoprune status` and the HTML report read, also while the run goes on), and
 * its scalars and histograms in a TensorBoard event file under tensorboard/ (a new file per process start).
 * Each process's events number from 1, so a line with seq 1 starts a process's share of the file.
 * Watching must never stop a run: a write that fails is logged once, and the log stops there.
 */

export const RUN_LOG_FILES = { events: 'events.jsonl', tensorboard: 'tensorboard' } as const;

export class RunLog {
  private jsonWrites: Promise<void> = Promise.resolve();
  private summaries: SummaryState = INITIAL_SUMMARY_STATE;
  private broken = false;

  private constructor(
    private readonly runDirectory: string,
    private readonly config: RunConfig,
    private readonly tensorboard: EventFile,
    private readonly logger: Logger,
  ) {}

  /**
   * Opens the log of a run starting in `runDirectory`; `resumedFrom`, a resumed run's checkpoint position,
   * starts a TensorBoard session right after it, so that readers drop what the killed process logged of
   * the steps the run redoes.
   */
  static async open(runDirectory: string, config: RunConfig, resumedFrom: { phaseIndex: number; step: number } | undefined, logger: Logger): Promise<RunLog> {
    const wallTime = Date.now() / 1000;
    const tensorboard = await EventFile.create(join(runDirectory, RUN_LOG_FILES.tensorboard), wallTime);
    const log = new RunLog(runDirectory, config, tensorboard, logger);
    if (resumedFrom) {
      const step = globalStep(config.phases, resumedFrom.phaseIndex, resumedFrom.step);
      log.summaries = { ...log.summaries, step };
      // What was logged up to the checkpoint's step stands; everything after it is redone.
      tensorboard.append([{ kind: 'session-start', wallTime, step: step + 1 }]);
    }
    return log;
  }

  /** `events`, with every event it publishes also kept here. */
  recording(events: EventPublisher): EventPublisher {
    return {
      runId: events.runId,
      publish: <E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E> => {
        const published = events.publish(event, data);
        this.record(published as RunEvent);
        return published;
      },
      flush: async () => {
        await events.flush();
        await this.flushed();
      },
      close: async () => {
        await events.close();
        await this.flushed();
      },
    };
  }

  record(event: RunEvent): void {
    if (this.broken) return;
    const line = `${JSON.stringify(event)}\n`;
    const path = join(this.runDirectory, RUN_LOG_FILES.events);
    this.jsonWrites = this.jsonWrites.then(() => (this.broken ? undefined : appendFile(path, line))).catch((error: Error) => this.stop(error));
    const { records, state } = summariesOf(this.config, this.summaries, event);
    this.summaries = state;
    this.tensorboard.append(records);
  }

  /** Resolves once everything recorded so far is written (or the log has stopped after a failed write). */
  async flushed(): Promise<void> {
    await this.jsonWrites;
    await this.tensorboard.flushed().catch((error: Error) => this.stop(error));
  }

  private stop(error: Error): void {
    if (this.broken) return;
    this.broken = true;
    this.logger.warn({ event: 'run-log.failed', error: error.message }, `cannot write the run's event log; it stops here: ${error.message}`);
  }
}
