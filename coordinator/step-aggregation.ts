import type { RunConfig } from '../shared/config.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { RunEventData } from '../shared/events/types.js';
import type { ProgressReport__Output } from '../shared/proto/generated/autoprune/v1/ProgressReport.js';
import { RankReports } from './rank-reports.js';

/**
 * Per-step reports across ranks: once every rank has reported a step, one `step` event with the ranks'
 * mean loss and accuracy, their summed throughput and the longest wait for input; replicas whose checksums differ fail the run.
 */
export class StepAggregation {
  private readonly reports = new RankReports<ProgressReport__Output>();

  constructor(
    private readonly phases: RunConfig['phases'],
    private readonly events: EventPublisher,
    private readonly fail: (reason: string) => void,
  ) {}

  add(report: ProgressReport__Output, world: number): void {
    const reports = this.reports.add(report, world);
    if (!reports) return;
    const diverged = divergence(reports);
    if (diverged) this.fail(diverged);
    this.events.publish('step', stepEvent(reports, this.phases[report.phaseIndex]!, world, report.remaining));
  }

  /** A new generation: the old one's partial steps will not complete. */
  clear(): void {
    this.reports.clear();
  }
}

/**
 * Replicas apply identical updates, so their checksums agree; if they differ, something is broken: the
 * reason the run stops, naming each rank's checksum. Undefined when they agree or none was sent.
 */
export function divergence(reports: readonly ProgressReport__Output[]): string | undefined {
  if (reports.every((r) => r.checksum === '')) return undefined;
  if (new Set(reports.map((r) => r.checksum)).size === 1) return undefined;
  const { phaseIndex, step } = reports[0]!;
  const detail = [...reports]
    .sort((a, b) => a.rank - b.rank)
    .map((r) => `rank ${r.rank} (${r.workerId}) ${r.checksum.slice(0, 16) || 'none'}`)
    .join(', ');
  return `replicas diverged at phase ${phaseIndex} step ${step}: checksums of W and M differ: ${detail}`;
}

/** The `step` event of one step, from every rank's report of it; `remaining` is the kept fraction the last report names. */
export function stepEvent(
  reports: readonly ProgressReport__Output[],
  phase: RunConfig['phases'][number],
  world: number,
  remaining: number,
): RunEventData<'step'> {
  const { phaseIndex, step } = reports[0]!;
  const mean = (pick: (r: ProgressReport__Output) => number) => reports.reduce((sum, r) => sum + pick(r), 0) / reports.length;
  const auxLoss = mean((r) => r.auxLoss);
  return {
    phase: phase.phase,
    phaseIndex,
    step,
    steps: phase.steps,
    loss: mean((r) => r.loss),
    accuracy: mean((r) => r.accuracy),
    ...(Number.isNaN(auxLoss) ? {} : { auxLoss }),
    remaining,
    ...(remaining > 0 ? { compression: 1 / remaining } : {}),
    imagesPerSecond: reports.reduce((sum, r) => sum + r.imagesPerSecond, 0),
    // Every rank waits for the slowest in the all-reduce: its wait is the run's.
    inputWaitSeconds: Math.max(...reports.map((r) => r.inputWaitSeconds)),
    allReduceSeconds: Math.max(...reports.map((r) => r.exchangeSeconds)),
    workers: world,
  };
}
