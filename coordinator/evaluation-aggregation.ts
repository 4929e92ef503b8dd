import type { RunConfig } from '../shared/config.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { LayerGatesData } from '../shared/events/types.js';
import type { Logger } from '../shared/logging.js';
import type { EvaluationReport__Output } from '../shared/proto/generated/autoprune/v1/EvaluationReport.js';
import type { PhaseTimeline } from './phase-timeline.js';
import { RankReports } from './rank-reports.js';

/**
 * Evaluation shares across ranks: each rank evaluates its share of the test set; once all have reported,
 * the test accuracy over the whole set is published (`eval`), and at a phase's last step the phase finishes.
 */
export class EvaluationAggregation {
  private readonly reports = new RankReports<EvaluationReport__Output>();

  constructor(
    private readonly phases: RunConfig['phases'],
    private readonly timeline: PhaseTimeline,
    private readonly events: EventPublisher,
    private readonly logger: Logger,
  ) {}

  add(report: EvaluationReport__Output, world: number): void {
    const reports = this.reports.add(report, world);
    if (!reports) return;
    const testAccuracy = accuracyOf(reports);
    const phase = this.phases[report.phaseIndex]!;
    const layers = layersOf(reports);
    this.events.publish('eval', { phase: phase.phase, phaseIndex: report.phaseIndex, step: report.step, testAccuracy, ...(layers ? { layers } : {}) });
    this.logger.info({ event: 'eval', phase: phase.phase, step: report.step, testAccuracy }, `test accuracy ${(testAccuracy * 100).toFixed(2)}%`);
    if (report.step === phase.steps) this.timeline.finish(report.phaseIndex, testAccuracy);
  }

  /** A new generation: the old one's partial evaluations will not complete. */
  clear(): void {
    this.reports.clear();
  }
}

/** The accuracy over the whole test set from every rank's share (0 for an empty set). */
export function accuracyOf(reports: readonly Pick<EvaluationReport__Output, 'correct' | 'count'>[]): number {
  const correct = reports.reduce((sum, r) => sum + r.correct, 0);
  const count = reports.reduce((sum, r) => sum + r.count, 0);
  return count === 0 ? 0 : correct / count;
}

/** The gates rank 0 described, as the `eval` event carries them; undefined when no rank sent any. */
export function layersOf(reports: readonly Pick<EvaluationReport__Output, 'rank' | 'layers'>[]): LayerGatesData[] | undefined {
  const described = reports.find((r) => r.rank === 0 && r.layers.length > 0);
  if (!described) return undefined;
  return described.layers.map((l) => ({
    name: l.name,
    group: l.group === 'conv' ? 'conv' : 'fc',
    granularity: l.granularity === 'neuron' ? 'neuron' : 'weight',
    params: l.params,
    kept: l.kept,
    flops: l.flops,
    flopsKept: l.flopsKept,
    gates: l.gates,
    gatesOpen: l.gatesOpen,
    histogram: {
      min: l.histogram?.min ?? 0,
      max: l.histogram?.max ?? 0,
      num: l.histogram?.num ?? 0,
      sum: l.histogram?.sum ?? 0,
      sumSquares: l.histogram?.sumSquares ?? 0,
      bucketLimit: l.histogram?.bucketLimit ?? [],
      bucket: l.histogram?.bucket ?? [],
    },
  }));
}
