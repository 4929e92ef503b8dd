import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import { type Disruption, type DistributedLimits, isAfter, onDisruption, type Position, rejoinWaitExpired, stepsRedone } from './decisions.js';
import type { Generation } from './rendezvous.js';
import type { RunStateMachine } from './run-state.js';

export interface RecoveryOptions {
  readonly run: RunStateMachine;
  readonly limits: DistributedLimits;
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly now: () => number;
  readonly fail: (reason: string) => void;
}

/**
 * Elastic recovery, acting on the decisions in decisions.ts: what a failure or a join starts (the run
 * re-forms, or fails beyond maxRecoveries), the minWorkers wait and its end, and, once the next generation
 * forms, how many steps it redoes. Tracks the furthest point the current generation reached for that.
 */
export class Recovery {
  private furthest: Position = { phaseIndex: 0, step: 0 };

  constructor(private readonly options: RecoveryOptions) {}

  /** The furthest point the current generation is known to have reached. */
  get reached(): Position {
    return this.furthest;
  }

  /** The current generation is known to have reached `position` (steps started count: they are redone too). */
  noteReached(position: Position): void {
    if (isAfter(position, this.furthest)) this.furthest = { phaseIndex: position.phaseIndex, step: position.step };
  }

  /** A member was noticed gone: published and logged, before the run acts on it. */
  detected(workerId: string, how: string, silentMs: number, generation: number, reason: string): void {
    this.options.events.publish('failure.detected', { workerId, how, detectSeconds: silentMs / 1000, generation });
    this.options.logger.warn({ event: 'failure.detected', workerId, how, detectMs: Math.round(silentMs) }, `failure detected: ${reason}`);
  }

  /** A failure or a join while the run is under way, with `live` workers left: the run re-forms (or fails). */
  disrupt(disruption: Disruption, live: number): void {
    const { run, limits } = this.options;
    const before = run.state;
    const decision = onDisruption(before, disruption, live, this.options.now(), limits);
    if (decision.action === 'fail') this.options.fail(decision.reason);
    if (decision.action !== 'recover') return;
    run.recover(decision.recovery);
    const waitBegins = (before.status !== 'recovering' || before.waitingSince === undefined) && decision.recovery.waitingSince !== undefined;
    if (waitBegins) {
      const { minWorkers, rejoinWaitSeconds } = limits;
      this.options.logger.warn(
        { event: 'recovery.waiting', workers: live, minWorkers, waitSeconds: rejoinWaitSeconds },
        `waiting up to ${rejoinWaitSeconds} s for workers`,
      );
    }
  }

  /** The clock moved on: a recovery that waited too long for enough workers fails the run. */
  tick(now: number, live: number): void {
    const reason = rejoinWaitExpired(this.options.run.state, live, now, this.options.limits);
    if (reason !== undefined) this.options.fail(reason);
  }

  /** A new generation formed after the run started: it goes on from `restart`, the newest state held in memory. */
  complete(generation: Generation, restart: Position): void {
    const { run, events, logger } = this.options;
    const state = run.state;
    const recoverSeconds = state.status === 'recovering' ? (this.options.now() - state.detectedAt) / 1000 : 0;
    if (state.status === 'recovering') run.recovered();
    const redone = stepsRedone(this.furthest, restart);
    this.furthest = restart;
    events.publish('recovery.completed', {
      generation: generation.number,
      workers: generation.members.length,
      recoverSeconds,
      stepsRedone: redone,
      from: restart,
    });
    logger.warn(
      {
        event: 'recovery.completed',
        generation: generation.number,
        workers: generation.members.map((m) => m.id),
        recoverMs: Math.round(recoverSeconds * 1000),
        stepsRedone: redone,
        from: restart,
      },
      `generation ${generation.number}: ${generation.members.length} workers go on from phase ${restart.phaseIndex} step ${restart.step}`,
    );
  }
}
