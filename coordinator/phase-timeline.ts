import type { RunConfig } from '../shared/config.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import type { PhaseSummary } from './report.js';

export interface PhaseTimelineOptions {
  readonly phases: RunConfig['phases'];
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly now: () => number;
  /** When the run started: a phase finished without a recorded start (a resumed run's) counts from here. */
  readonly startedAt: number;
}

/** When each phase started and how it finished: the `phase` events and the summaries report.json lists. */
export class PhaseTimeline {
  private readonly startedAt = new Map<number, number>();
  private readonly finished: PhaseSummary[] = [];
  private latest: number | undefined;

  constructor(private readonly options: PhaseTimelineOptions) {}

  /** The summaries of the finished phases, by phase index. */
  get summaries(): PhaseSummary[] {
    return [...this.finished];
  }

  /** Phases a resumed run finished before (from its checkpoint's manifest). */
  restore(summaries: readonly (PhaseSummary | undefined)[]): void {
    for (const [index, summary] of summaries.entries()) if (summary) this.finished[index] = summary;
  }

  /** The phase whose tasks are handed out now (undefined before the first). */
  get current(): string | undefined {
    return this.latest === undefined ? undefined : this.options.phases[this.latest]?.phase;
  }

  /** The first task of phase `phaseIndex` is handed out: the phase starts (once). */
  start(phaseIndex: number): void {
    this.latest = phaseIndex;
    if (this.startedAt.has(phaseIndex)) return;
    this.startedAt.set(phaseIndex, this.options.now());
    const phase = this.options.phases[phaseIndex]!;
    this.options.events.publish('phase', { phase: phase.phase, phaseIndex, status: 'started', steps: phase.steps });
    this.options.logger.info({ event: 'phase', phase: phase.phase, index: phaseIndex, steps: phase.steps }, `phase ${phase.phase} started`);
  }

  /** Phase `phaseIndex` was evaluated at its last step. */
  finish(phaseIndex: number, testAccuracy: number): void {
    const phase = this.options.phases[phaseIndex]!;
    const seconds = (this.options.now() - (this.startedAt.get(phaseIndex) ?? this.options.startedAt)) / 1000;
    this.finished[phaseIndex] = { name: phase.phase, steps: phase.steps, seconds, testAccuracy };
    this.options.events.publish('phase', { phase: phase.phase, phaseIndex, status: 'completed', steps: phase.steps, seconds, testAccuracy });
    this.options.logger.info({ event: 'phase.finished', phase: phase.phase, seconds, testAccuracy }, `phase ${phase.phase} finished`);
  }
}
