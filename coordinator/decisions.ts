import type { RunConfig } from '../shared/config.js';
import type { DisruptionKind, Recovering, RunState, RunStatus } from './run-state.js';

/**
 * The coordinator's decisions, as pure functions of the run's state, what happened and the time: which
 * workers are lost, how many form a generation, when a run that lacks workers starts without them or gives
 * up, what a failure or a join starts, when a recovery below minWorkers gives up, how many steps a recovery
 * redoes, which generations are refused, who may send the run's state. The coordinator
 * (coordinator.ts, recovery.ts) acts on them; the unit tests drive them on a fake clock.
 */

/** A point in the run: a phase index and the steps done in that phase. */
export interface Position {
  readonly phaseIndex: number;
  readonly step: number;
}

export type DistributedLimits = Pick<RunConfig['distributed'], 'minWorkers' | 'rejoinWaitSeconds' | 'maxRecoveries'>;

/** Whether `a` is further on in the run than `b`. */
export function isAfter(a: Position, b: Position): boolean {
  return a.phaseIndex > b.phaseIndex || (a.phaseIndex === b.phaseIndex && a.step > b.step);
}

export function samePosition(a: Position, b: Position): boolean {
  return a.phaseIndex === b.phaseIndex && a.step === b.step;
}

/** Workers not heard from for longer than `timeoutMs` at `now`, with how long each has been silent. */
export function lostWorkers(lastSeen: Iterable<readonly [string, number]>, now: number, timeoutMs: number): Array<{ workerId: string; silentMs: number }> {
  const lost: Array<{ workerId: string; silentMs: number }> = [];
  for (const [workerId, seen] of lastSeen) if (now - seen > timeoutMs) lost.push({ workerId, silentMs: now - seen });
  return lost;
}

/**
 * How many waiting workers form the next generation: all `workers` for the first; afterwards every live
 * worker, up to that maximum, and none (0: do not form) while fewer than minWorkers are live.
 */
export function generationSize(status: RunStatus, live: number, workers: number, minWorkers: number): number {
  if (status === 'pending') return workers;
  // A run that stops forms no generation: its workers come back to the coordinator that resumes it.
  if (status === 'stopping' || live < minWorkers) return 0;
  return Math.min(workers, live);
}

export type StartLimits = Pick<RunConfig['distributed'], 'minWorkers' | 'rendezvousTimeoutSeconds'>;

/** Where a run that waits for its first generation stands. */
export interface StartWaitState {
  readonly status: RunStatus;
  /** When the coordinator started. */
  readonly since: number;
  /** Workers waiting at the rendezvous. */
  readonly waiting: number;
  /** Workers that registered and left before the run started (and did not come back), each with how. */
  readonly left: readonly string[];
}

export type StartDecision =
  | { readonly action: 'wait' }
  /** Form the first generation with the workers waiting now (an elastic start, fewer than the maximum). */
  | { readonly action: 'form' }
  | { readonly action: 'fail'; readonly reason: string };

/**
 * Whether a run still waiting for its first generation at `now` waits on (it forms by itself once every
 * worker waits), starts with the workers waiting at the rendezvous once `rendezvousTimeoutSeconds` have
 * passed since the coordinator started, if they are at least minWorkers (as torchelastic's min..max
 * nodes), or fails, naming the workers that registered and left and how many are missing.
 */
export function startDecision(wait: StartWaitState, now: number, limits: StartLimits): StartDecision {
  const { minWorkers, rendezvousTimeoutSeconds } = limits;
  if (wait.status !== 'pending' || now - wait.since < rendezvousTimeoutSeconds * 1000) return { action: 'wait' };
  if (wait.waiting >= minWorkers) return { action: 'form' };
  const left = wait.left.length ? `workers that registered and left: ${wait.left.join(', ')}` : 'no worker registered and left';
  return {
    action: 'fail',
    reason:
      `the run did not start within distributed.rendezvousTimeoutSeconds (${rendezvousTimeoutSeconds} s): ${wait.waiting} of the ` +
      `${minWorkers} workers needed (distributed.minWorkers) waited at the rendezvous, ${minWorkers - wait.waiting} missing; ${left}`,
  };
}

/** The number of the generation after `last`; after a coordinator restart `last` is the run directory's `generation` file. */
export function nextGeneration(last: number): number {
  return last + 1;
}

/**
 * Which calls a generation tag shuts out when the run is at `current`: a registration names 0 (a new
 * worker) or the current one (a worker that lost the coordinator); a rendezvous may come from any
 * generation up to the current; every other call must name the current one.
 */
export function refusesGeneration(call: 'register' | 'rendezvous' | 'member', claimed: number, current: number): boolean {
  if (call === 'register') return claimed !== 0 && claimed !== current;
  if (call === 'rendezvous') return claimed > current;
  return claimed !== current;
}

/**
 * Which check a failure report tagged `claimed` gets when the run is at `current`: before the first
 * generation a registered worker may send one (generation 0); one about a generation already left behind
 * is dropped; any other must come from a member of the current generation.
 */
export function failureReportCheck(claimed: number, current: number, status: RunStatus): 'registered' | 'left-behind' | 'member' {
  if (claimed === 0 && status === 'pending') return 'registered';
  return claimed < current ? 'left-behind' : 'member';
}

export interface Disruption {
  readonly kind: DisruptionKind;
  readonly reason: string;
}

export type DisruptionDecision =
  /** Enter the recovering state with this data, or update the recovery under way to it. */
  | { readonly action: 'recover'; readonly recovery: Omit<Recovering, 'status'> }
  /** The recovery under way already covers it. */
  | { readonly action: 'keep' }
  | { readonly action: 'fail'; readonly reason: string }
  /** The run is not under way (pending or finished): nothing to recover. */
  | { readonly action: 'ignore' };

/**
 * What a failure or a join does to the run: the run re-forms, and a failure counts as one more recovery
 * (a join does not: growing is not recovering); beyond `maxRecoveries` the run fails instead, naming the
 * limit, the count and the failure. A disruption while the run already re-forms joins that recovery,
 * which keeps its start and first failure. The minWorkers wait begins the first time fewer are `live`.
 */
export function onDisruption(state: RunState, disruption: Disruption, live: number, now: number, limits: DistributedLimits): DisruptionDecision {
  if (state.status !== 'running' && state.status !== 'recovering') return { action: 'ignore' };
  const recovering = state.status === 'recovering' ? state : undefined;
  const countsAsNew = disruption.kind === 'failure' && recovering?.cause !== 'failure';
  const previous = state.status === 'recovering' ? state.count : state.recoveries;
  const count = countsAsNew ? previous + 1 : previous;
  if (count > limits.maxRecoveries) {
    return { action: 'fail', reason: `recovery ${count} exceeds distributed.maxRecoveries (${limits.maxRecoveries}); last failure: ${disruption.reason}` };
  }
  const waitingSince = recovering?.waitingSince ?? (live < limits.minWorkers ? now : undefined);
  if (recovering && !countsAsNew && waitingSince === recovering.waitingSince) return { action: 'keep' };
  return {
    action: 'recover',
    recovery: {
      detectedAt: recovering?.detectedAt ?? now,
      // The first failure is the cause; a join's reason stands only until a failure comes.
      reason: countsAsNew || !recovering ? disruption.reason : recovering.reason,
      count,
      cause: countsAsNew || !recovering ? disruption.kind : recovering.cause,
      waitingSince,
    },
  };
}

/**
 * Whether a recovery below minWorkers has waited past `rejoinWaitSeconds` with still too few `live`
 * workers: then the run fails with the recovery's (first failure's) reason, returned here.
 */
export function rejoinWaitExpired(state: RunState, live: number, now: number, limits: DistributedLimits): string | undefined {
  if (state.status !== 'recovering' || state.waitingSince === undefined) return undefined;
  const { minWorkers, rejoinWaitSeconds } = limits;
  if (live >= minWorkers || now - state.waitingSince < rejoinWaitSeconds * 1000) return undefined;
  return `${state.reason}; only ${live} of the ${minWorkers} workers needed came back within ${rejoinWaitSeconds} s`;
}

/** What a state upload from a member of the current generation is taken as, or why it is refused. */
export type UploadVerdict =
  /** Rank 0's state at a point a task asked for: it becomes the run's checkpoint. */
  | 'checkpoint'
  /** A survivor's state while the run re-forms: kept in memory if it is the furthest. */
  | 'offer'
  | 'not-rank-zero'
  | 'not-asked'
  | 'beyond-reached'
  /** The run is pending or over: it takes no state. */
  | 'outside-run';

/**
 * Who may send the run's state, and where: outside a recovery only rank 0, at a point (phase index,
 * step) a task handed to it asked for (`asked`); while the run re-forms or stops, any member of the generation
 * that broke, up to the furthest point that generation `reached`. The caller is a member of the current
 * generation (checked before): `rank` is its rank there.
 */
export function uploadVerdict(status: RunStatus, rank: number, position: Position, asked: readonly Position[], reached: Position): UploadVerdict {
  if (status === 'recovering' || status === 'stopping') return isAfter(position, reached) ? 'beyond-reached' : 'offer';
  if (status !== 'running') return 'outside-run';
  if (rank !== 0) return 'not-rank-zero';
  return asked.some((point) => samePosition(point, position)) ? 'checkpoint' : 'not-asked';
}

/** Steps started after the point the run restarts from: their work is lost and they run again. */
export function stepsRedone(furthest: Position, restart: Position): number {
  return furthest.phaseIndex === restart.phaseIndex ? Math.max(0, furthest.step - restart.step) : furthest.step;
}
