import type { Checkpoint } from '../shared/checkpoint.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import type { RunDirectory } from './run-directory.js';

/** Whether `seconds` (0: off) have passed at `now` since the last checkpoint, taken at `lastAt` (time-based checkpoints). */
export function checkpointDue(lastAt: number, now: number, seconds: number): boolean {
  return seconds > 0 && now - lastAt >= seconds * 1000;
}

export interface CheckpointWriterOptions {
  readonly runDirectory: RunDirectory;
  /** `checkpoint.seconds`: a checkpoint is due once this many seconds have passed since the last (0: off). */
  readonly seconds: number;
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly now: () => number;
  /** Whether the run has ended: writes still queued then are skipped. */
  readonly finished: () => boolean;
  /** A write failed: the run cannot go on. */
  readonly fail: (reason: string) => void;
}

/**
 * Writes the run's checkpoints one after another, while training goes on: an upload is acknowledged once
 * its state is checked, and its disk write overlaps the next steps.
 */
export class CheckpointWriter {
  private writes: Promise<void> = Promise.resolve();
  private lastAt: number;

  constructor(private readonly options: CheckpointWriterOptions) {
    this.lastAt = options.now();
  }

  /** Whether rank 0 should upload its state at the end of the task it takes now. */
  get due(): boolean {
    return checkpointDue(this.lastAt, this.options.now(), this.options.seconds);
  }

  /** Queues `checkpoint` with the run state beside it (world size, generation, finished phases...). */
  write(checkpoint: Checkpoint, run: Record<string, unknown>): void {
    this.lastAt = this.options.now();
    this.writes = this.writes.then(() => this.save(checkpoint, run));
  }

  /** Resolves once every queued write has ended. */
  drained(): Promise<void> {
    return this.writes;
  }

  private async save(checkpoint: Checkpoint, run: Record<string, unknown>): Promise<void> {
    const { runDirectory, events, logger, now } = this.options;
    if (this.options.finished()) return;
    const { phase, step } = checkpoint.position;
    const started = now();
    try {
      const path = await runDirectory.saveCheckpoint(checkpoint, run);
      events.publish('checkpoint.saved', { path, phase, step });
      logger.info({ event: 'checkpoint.saved', phase, step, path, ms: Math.round(now() - started) }, 'checkpoint saved');
    } catch (error) {
      this.options.fail(`cannot write the checkpoint at ${phase} step ${step}: ${(error as Error).message}; the previous checkpoints are intact`);
    }
  }
}
