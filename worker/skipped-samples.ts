import type { SkippedSample } from '../engine/data/source.js';
import type { Logger } from '../shared/logging.js';
import type { SkippedSample as SkippedSampleMessage } from '../shared/proto/generated/autoprune/v1/SkippedSample.js';

/**
 * Samples the data source left out as bad (`data.badSamples: skip`): each logged with its file and offset
 * when met, and sent to the coordinator with the next progress or evaluation report, which counts each once.
 */
export class SkippedSamples {
  private pending: SkippedSample[] = [];

  constructor(private readonly logger: Logger) {}

  readonly record = (sample: SkippedSample): void => {
    const where = sample.offset === undefined ? sample.file : `${sample.file} at byte ${sample.offset}`;
    this.logger.warn({ event: 'data.skipped', ...sample }, `skipped a bad ${sample.split} sample (${where}): ${sample.reason}`);
    this.pending.push(sample);
  };

  /** The samples met since the last call, as the reports carry them. */
  drain(): SkippedSampleMessage[] {
    const drained = this.pending.map(({ split, file, offset, reason, splitSize }) => ({ split, file, offset: offset ?? -1, reason, splitSize }));
    this.pending = [];
    return drained;
  }
}
