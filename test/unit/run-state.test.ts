import assert from 'node:assert/strict';
import { RUN_TRANSITIONS, RunStateMachine, type RunStatus } from '../../coordinator/run-state.js';

const RECOVERY = { detectedAt: 1000, reason: 'worker b was lost', count: 1, cause: 'failure', waitingSince: undefined } as const;

/** A machine brought to `status` through allowed transitions. */
function machineIn(status: RunStatus): RunStateMachine {
  const run = new RunStateMachine();
  if (status === 'pending') return run;
  if (status === 'failed') {
    run.fail('broken');
    return run;
  }
  run.start();
  if (status === 'recovering') run.recover(RECOVERY);
  if (status === 'completed') run.complete();
  return run;
}

/** Asks `run` to move to `status` through the method that leads there. */
function moveTo(run: RunStateMachine, status: RunStatus): void {
  if (status === 'running') {
    if (run.status === 'recovering') run.recovered();
    else run.start();
  } else if (status === 'recovering') run.recover(RECOVERY);
  else if (status === 'completed') run.complete();
  else if (status === 'failed') run.fail('later');
}

describe('run state machine', () => {
  it('goes pending → running → completed and refuses anything else', async () => {
    const run = new RunStateMachine();
    assert.throws(() => run.complete(), /run cannot go from pending to completed/);
    run.start();
    run.complete();
    assert.equal(await run.whenFinished(), 'completed');
    assert.equal(run.fail('late'), false);
    assert.equal(run.reason, undefined);
  });

  it('keeps the first failure reason', async () => {
    const run = new RunStateMachine();
    run.start();
    assert.equal(run.fail('first'), true);
    assert.equal(run.fail('second'), false);
    assert.equal(run.reason, 'first');
    assert.equal(await run.whenFinished(), 'failed');
  });

  it('holds the recovery in the recovering state and carries its count back into running', () => {
    const run = machineIn('running');
    run.recover(RECOVERY);
    assert.deepEqual(run.state, { status: 'recovering', ...RECOVERY });
    assert.equal(run.underWay, true);
    run.recover({ ...RECOVERY, waitingSince: 2000 });
    assert.equal(run.state.status === 'recovering' && run.state.waitingSince, 2000);
    run.recovered();
    assert.deepEqual(run.state, { status: 'running', recoveries: 1 });
    run.recover({ ...RECOVERY, count: 2 });
    run.fail('gave up');
    assert.deepEqual(run.state, { status: 'failed', reason: 'gave up', badInput: false, interrupted: false });
    assert.equal(run.underWay, false);
  });

  it('allows exactly the transitions of its table; every other one throws', () => {
    const statuses: RunStatus[] = ['pending', 'running', 'recovering', 'completed', 'failed'];
    for (const from of statuses) {
      for (const to of statuses.filter((s) => s !== 'pending')) {
        const run = machineIn(from);
        if (RUN_TRANSITIONS[from].includes(to)) {
          moveTo(run, to);
          assert.equal(run.status, to, `${from} → ${to}`);
        } else if (to === 'failed') {
          // Only a finished run refuses to fail, and it says so instead of throwing: the first end stands.
          assert.equal(run.fail('later'), false, `${from} → failed`);
          assert.equal(run.status, from);
        } else {
          assert.throws(() => moveTo(run, to), new RegExp(`run cannot go from ${from} to ${to}`), `${from} → ${to}`);
          assert.equal(run.status, from);
        }
      }
    }
    assert.deepEqual(RUN_TRANSITIONS.pending, ['running', 'failed']);
    assert.deepEqual(RUN_TRANSITIONS.completed, []);
    assert.deepEqual(RUN_TRANSITIONS.failed, []);
  });
});
