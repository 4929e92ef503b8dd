import type { SkippedSample__Output } from '../shared/proto/generated/autoprune/v1/SkippedSample.js';

/** What report.json says of the samples left out as bad (`data.badSamples: skip`). */
export interface DataReport {
  readonly badSamples: number;
  readonly skipped: ReadonlyArray<{ readonly split: string; readonly file: string; readonly offset?: number; readonly reason: string }>;
}

/**
 * The samples workers left out as bad: each counted once (by split, file and offset), however often it was read (every epoch, and
 * again in steps redone after a recovery). Once a split's bad samples exceed `maxFraction` of it, the run
 * fails as bad input does, naming the count and the last one.
 */
export class BadSampleLedger {
  private readonly samples = new Map<string, SkippedSample__Output>();
  private readonly perSplit = new Map<string, number>();

  constructor(
    private readonly maxFraction: number,
    private readonly fail: (reason: string) => void,
  ) {}

  add(skipped: readonly SkippedSample__Output[]): void {
    for (const sample of skipped) {
      const key = `${sample.split}:${sample.file}@${sample.offset}`;
      if (this.samples.has(key)) continue;
      this.samples.set(key, sample);
      const bad = (this.perSplit.get(sample.split) ?? 0) + 1;
      this.perSplit.set(sample.split, bad);
      if (bad > this.maxFraction * sample.splitSize) {
        const where = sample.offset >= 0 ? `${sample.file} at byte ${sample.offset}` : sample.file;
        this.fail(
          `${bad} of the ${sample.splitSize} ${sample.split} samples are bad, more than data.maxBadFraction (${this.maxFraction}) allows; ` +
            `the last: ${where}: ${sample.reason}`,
        );
      }
    }
  }

  get report(): DataReport {
    const skipped = [...this.samples.values()].map((s) => ({
      split: s.split,
      file: s.file,
      ...(s.offset >= 0 ? { offset: s.offset } : {}),
      reason: s.reason,
    }));
    return { badSamples: skipped.length, skipped };
  }
}
