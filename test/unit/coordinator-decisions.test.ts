import assert from 'node:assert/strict';
import { checkpointDue } from '../../coordinator/checkpoint-writer.js';
import {
  failureReportCheck,
  generationSize,
  isAfter,
  lostWorkers,
  nextGeneration,
  onDisruption,
  refusesGeneration,
  rejoinWaitExpired,
  startDecision,
  stepsRedone,
  uploadVerdict,
} from '../../coordinator/decisions.js';
import type { Recovering, RunState } from '../../coordinator/run-state.js';
import { validateConfig } from '../../shared/config.js';

const LIMITS = { minWorkers: 2, rejoinWaitSeconds: 5, maxRecoveries: 3 };
const RUNNING: RunState = { status: 'running', recoveries: 0 };
const failure = (reason: string) => ({ kind: 'failure', reason }) as const;
const join = (reason: string) => ({ kind: 'join', reason }) as const;

function recovering(fields: Partial<Recovering> = {}): Recovering {
  return { status: 'recovering', detectedAt: 1000, reason: 'worker b was lost', count: 1, cause: 'failure', waitingSince: undefined, ...fields };
}

describe('coordinator decisions', () => {
  it('declares lost exactly the workers silent for longer than the heartbeat timeout', () => {
    const lastSeen = new Map([
      ['a', 10_000],
      ['b', 7_000],
      ['c', 6_500],
    ]);
    // c has been silent for exactly the timeout: not yet lost.
    assert.deepEqual(lostWorkers(lastSeen, 9_500, 3000), []);
    assert.deepEqual(lostWorkers(lastSeen, 10_000, 3000), [{ workerId: 'c', silentMs: 3500 }]);
    assert.deepEqual(lostWorkers(lastSeen, 10_001, 3000), [
      { workerId: 'b', silentMs: 3001 },
      { workerId: 'c', silentMs: 3501 },
    ]);
  });

  it('forms the first generation from all workers, later ones from the live workers up to the maximum, none below minWorkers', () => {
    assert.equal(generationSize('pending', 1, 4, 2), 4);
    assert.equal(generationSize('recovering', 3, 4, 2), 3);
    assert.equal(generationSize('recovering', 5, 4, 2), 4);
    assert.equal(generationSize('recovering', 1, 4, 2), 0);
    assert.equal(generationSize('running', 2, 4, 2), 2);
  });

  it('a failure starts a counted recovery; a join re-forms without counting', () => {
    assert.deepEqual(onDisruption(RUNNING, failure('worker b was lost'), 3, 1000, LIMITS), {
      action: 'recover',
      recovery: { detectedAt: 1000, reason: 'worker b was lost', count: 1, cause: 'failure', waitingSince: undefined },
    });
    assert.deepEqual(onDisruption({ status: 'running', recoveries: 2 }, join('worker d joins'), 4, 1000, LIMITS), {
      action: 'recover',
      recovery: { detectedAt: 1000, reason: 'worker d joins', count: 2, cause: 'join', waitingSince: undefined },
    });
  });

  it('a disruption during a recovery joins it: the first failure and its time stand; a failure after a join counts', () => {
    assert.deepEqual(onDisruption(recovering(), failure('worker c was lost'), 2, 3000, LIMITS), { action: 'keep' });
    assert.deepEqual(onDisruption(recovering(), join('worker d joins'), 3, 3000, LIMITS), { action: 'keep' });
    assert.deepEqual(onDisruption(recovering({ reason: 'worker d joins', cause: 'join', count: 0 }), failure('worker c was lost'), 3, 3000, LIMITS), {
      action: 'recover',
      recovery: { detectedAt: 1000, reason: 'worker c was lost', count: 1, cause: 'failure', waitingSince: undefined },
    });
  });

  it('starts the minWorkers wait the first time too few workers are live, and keeps its start', () => {
    const below = onDisruption(RUNNING, failure('worker b was lost'), 1, 1000, LIMITS);
    assert.equal(below.action === 'recover' && below.recovery.waitingSince, 1000);
    const later = onDisruption(recovering(), failure('worker c was lost'), 1, 2500, LIMITS);
    assert.equal(later.action === 'recover' && later.recovery.waitingSince, 2500);
    assert.equal(later.action === 'recover' && later.recovery.reason, 'worker b was lost');
    assert.deepEqual(onDisruption(recovering({ waitingSince: 2500 }), failure('worker d was lost'), 0, 4000, LIMITS), { action: 'keep' });
  });

  it('fails the run on the recovery beyond maxRecoveries, naming the limit, the count and the last failure', () => {
    assert.deepEqual(onDisruption({ status: 'running', recoveries: 3 }, failure('worker b at 10.0.0.2:1 was lost (its process exited)'), 3, 1000, LIMITS), {
      action: 'fail',
      reason: 'recovery 4 exceeds distributed.maxRecoveries (3); last failure: worker b at 10.0.0.2:1 was lost (its process exited)',
    });
    assert.equal(onDisruption(RUNNING, failure('x'), 3, 1000, { ...LIMITS, maxRecoveries: 0 }).action, 'fail');
    assert.equal(onDisruption({ status: 'running', recoveries: 3 }, join('worker d joins'), 3, 1000, LIMITS).action, 'recover');
    assert.equal(onDisruption(recovering({ cause: 'join', count: 3 }), failure('x'), 3, 1000, LIMITS).action, 'fail');
  });

  it('reads distributed.maxRecoveries from the config: 10 by default, a count otherwise', () => {
    const base = { model: { name: 'lenet300' }, data: { dataset: 'mnist' }, phases: [{ phase: 'dense', steps: 1, weights: { lr: 1e-3 } }] };
    assert.equal(validateConfig(base, 'test').distributed.maxRecoveries, 10);
    assert.equal(validateConfig({ ...base, distributed: { maxRecoveries: 0 } }, 'test').distributed.maxRecoveries, 0);
    assert.throws(() => validateConfig({ ...base, distributed: { maxRecoveries: -1 } }, 'test'), /distributed\.maxRecoveries: .*found -1/);
  });

  it('ignores disruptions while the run is not under way', () => {
    for (const state of [
      { status: 'pending' },
      { status: 'stopping', reason: 'SIGTERM' },
      { status: 'completed' },
      { status: 'failed', reason: 'x', badInput: false, interrupted: false },
    ] as const) {
      assert.deepEqual(onDisruption(state, failure('x'), 0, 1000, LIMITS), { action: 'ignore' });
    }
  });

  it('fails a recovery below minWorkers once it has waited rejoinWaitSeconds, with the first failure’s reason', () => {
    const waiting = recovering({ waitingSince: 2000 });
    assert.equal(rejoinWaitExpired(waiting, 1, 6999, LIMITS), undefined);
    assert.equal(rejoinWaitExpired(waiting, 1, 7000, LIMITS), 'worker b was lost; only 1 of the 2 workers needed came back within 5 s');
    assert.equal(rejoinWaitExpired(waiting, 2, 9000, LIMITS), undefined, 'enough workers came back');
    assert.equal(rejoinWaitExpired(recovering(), 1, 9000, LIMITS), undefined, 'never waited');
    assert.equal(rejoinWaitExpired(RUNNING, 1, 9000, LIMITS), undefined);
  });

  it('counts the steps started after the point the run restarts from', () => {
    assert.equal(stepsRedone({ phaseIndex: 1, step: 7 }, { phaseIndex: 1, step: 5 }), 2);
    assert.equal(stepsRedone({ phaseIndex: 1, step: 5 }, { phaseIndex: 1, step: 5 }), 0);
    assert.equal(stepsRedone({ phaseIndex: 1, step: 3 }, { phaseIndex: 1, step: 5 }), 0);
    assert.equal(stepsRedone({ phaseIndex: 2, step: 3 }, { phaseIndex: 1, step: 10 }), 3);
    assert.ok(isAfter({ phaseIndex: 2, step: 0 }, { phaseIndex: 1, step: 10 }));
    assert.ok(!isAfter({ phaseIndex: 1, step: 10 }, { phaseIndex: 1, step: 10 }));
  });

  it('refuses stale generations: registrations past 0 and the current, rendezvous claims ahead, other calls not current', () => {
    assert.equal(refusesGeneration('register', 0, 4), false);
    assert.equal(refusesGeneration('register', 4, 4), false);
    assert.equal(refusesGeneration('register', 3, 4), true);
    assert.equal(refusesGeneration('rendezvous', 3, 4), false);
    assert.equal(refusesGeneration('rendezvous', 5, 4), true);
    assert.equal(refusesGeneration('member', 4, 4), false);
    assert.equal(refusesGeneration('member', 3, 4), true);
    assert.equal(refusesGeneration('member', 5, 4), true);
    assert.equal(failureReportCheck(0, 0, 'pending'), 'registered');
    assert.equal(failureReportCheck(3, 4, 'recovering'), 'left-behind');
    assert.equal(failureReportCheck(4, 4, 'running'), 'member');
  });

  it('numbers generations on from the one recorded before a coordinator restart', () => {
    assert.equal(nextGeneration(0), 1);
    assert.equal(nextGeneration(7), 8);
  });

  it('makes a time-based checkpoint due once its seconds have passed', () => {
    assert.equal(checkpointDue(1000, 30_999, 30), false);
    assert.equal(checkpointDue(1000, 31_000, 30), true);
    assert.equal(checkpointDue(1000, 1e9, 0), false);
  });

  it('before the first generation waits rendezvousTimeoutSeconds, then starts with the workers waiting if they are at least minWorkers', () => {
    const limits = { minWorkers: 2, rendezvousTimeoutSeconds: 300 };
    const wait = { status: 'pending', since: 1000, waiting: 3, left: [] } as const;
    assert.deepEqual(startDecision(wait, 300_999, limits), { action: 'wait' });
    assert.deepEqual(startDecision(wait, 301_000, limits), { action: 'form' });
    assert.deepEqual(startDecision({ ...wait, waiting: 2 }, 301_000, limits), { action: 'form' }, 'exactly minWorkers');
    assert.deepEqual(startDecision({ ...wait, status: 'running' }, 1e9, limits), { action: 'wait' }, 'the run started: nothing to decide');
    assert.deepEqual(startDecision({ ...wait, status: 'recovering', waiting: 0 }, 1e9, limits), { action: 'wait' });
  });

  it('fails a run too few workers wait for past rendezvousTimeoutSeconds, naming those that registered and left and how many are missing', () => {
    const limits = { minWorkers: 3, rendezvousTimeoutSeconds: 60 };
    const left = ['w1 (no heartbeat for 3.2 s)', 'w2 (its process exited)'];
    assert.deepEqual(startDecision({ status: 'pending', since: 0, waiting: 1, left }, 60_000, limits), {
      action: 'fail',
      reason:
        'the run did not start within distributed.rendezvousTimeoutSeconds (60 s): 1 of the 3 workers needed (distributed.minWorkers) ' +
        'waited at the rendezvous, 2 missing; workers that registered and left: w1 (no heartbeat for 3.2 s), w2 (its process exited)',
    });
    const none = startDecision({ status: 'pending', since: 0, waiting: 0, left: [] }, 60_000, limits);
    const ending = '0 of the 3 workers needed (distributed.minWorkers) waited at the rendezvous, 3 missing; no worker registered and left';
    assert.ok(none.action === 'fail' && none.reason.endsWith(ending), JSON.stringify(none));
    assert.deepEqual(startDecision({ status: 'pending', since: 0, waiting: 1, left }, 59_999, limits), { action: 'wait' });
  });

  it('reads distributed.rendezvousTimeoutSeconds from the config: 300 by default', () => {
    const base = { model: { name: 'lenet300' }, data: { dataset: 'mnist' }, phases: [{ phase: 'dense', steps: 1, weights: { lr: 1e-3 } }] };
    assert.equal(validateConfig(base, 'test').distributed.rendezvousTimeoutSeconds, 300);
    assert.equal(validateConfig({ ...base, distributed: { rendezvousTimeoutSeconds: 20 } }, 'test').distributed.rendezvousTimeoutSeconds, 20);
    assert.throws(() => validateConfig({ ...base, distributed: { rendezvousTimeoutSeconds: 0 } }, 'test'), /distributed\.rendezvousTimeoutSeconds/);
  });

  it('takes the run’s state from rank 0 only at a point a task asked for, and during a recovery from members up to where the generation reached', () => {
    const asked = [
      { phaseIndex: 0, step: 12 },
      { phaseIndex: 1, step: 4 },
    ];
    const reached = { phaseIndex: 1, step: 7 };
    assert.equal(uploadVerdict('running', 0, { phaseIndex: 1, step: 4 }, asked, reached), 'checkpoint');
    assert.equal(uploadVerdict('running', 0, { phaseIndex: 0, step: 1499 }, asked, reached), 'not-asked');
    assert.equal(uploadVerdict('running', 0, { phaseIndex: 0, step: 12 }, [], reached), 'not-asked', 'nothing outstanding');
    assert.equal(uploadVerdict('running', 1, { phaseIndex: 1, step: 4 }, asked, reached), 'not-rank-zero');
    assert.equal(uploadVerdict('recovering', 1, { phaseIndex: 1, step: 7 }, [], reached), 'offer', 'up to the furthest point reached');
    assert.equal(uploadVerdict('recovering', 0, { phaseIndex: 0, step: 30 }, [], reached), 'offer');
    assert.equal(uploadVerdict('recovering', 0, { phaseIndex: 1, step: 8 }, asked, reached), 'beyond-reached');
    assert.equal(uploadVerdict('recovering', 0, { phaseIndex: 2, step: 0 }, asked, reached), 'beyond-reached');
    for (const status of ['pending', 'completed', 'failed'] as const)
      assert.equal(uploadVerdict(status, 0, { phaseIndex: 1, step: 4 }, asked, reached), 'outside-run');
  });
});
