import type { Logger } from '../shared/logging.js';
import { type StartLimits, startDecision } from './decisions.js';
import type { Rendezvous } from './rendezvous.js';
import type { RunStatus } from './run-state.js';

export interface StartWaitOptions {
  /** When the coordinator started: the wait counts from there. */
  readonly since: number;
  readonly limits: StartLimits;
  /** The most workers the run takes. */
  readonly workers: number;
  readonly rendezvous: Rendezvous;
  readonly logger: Logger;
  readonly fail: (reason: string) => void;
}

/**
 * The wait for the first generation, acting on startDecision (decisions.ts): once
 * `distributed.rendezvousTimeoutSeconds` have passed, the run starts with the workers waiting at the
 * rendezvous, or fails naming the workers that registered and left before it started.
 */
export class StartWait {
  /** Workers that registered and left before the run started and did not come back: how each left. */
  private readonly left = new Map<string, string>();

  constructor(private readonly options: StartWaitOptions) {}

  /** `workerId` left before the run started. */
  workerLeft(workerId: string, how: string): void {
    this.left.set(workerId, how);
  }

  /** `workerId` registered (again): it no longer counts as gone. */
  workerRegistered(workerId: string): void {
    this.left.delete(workerId);
  }

  /** The clock moved on to `now`, with the run in `status`. */
  tick(now: number, status: RunStatus): void {
    const { rendezvous, limits, logger, workers } = this.options;
    const waiting = rendezvous.waitingCount;
    const left = [...this.left].map(([id, how]) => `${id} (${how})`);
    const decision = startDecision({ status, since: this.options.since, waiting, left }, now, limits);
    if (decision.action === 'fail') this.options.fail(decision.reason);
    if (decision.action !== 'form') return;
    logger.warn(
      { event: 'run.elastic-start', workers: waiting, maximum: workers },
      `starting with the ${waiting} of ${workers} workers waiting after distributed.rendezvousTimeoutSeconds`,
    );
    rendezvous.formWithWaiting();
  }
}
