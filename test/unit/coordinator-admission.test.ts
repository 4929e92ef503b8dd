import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { refusal, snapshot, startRun } from '../helpers/coordinator-run.js';

/**
 * Who the coordinator lets in and whose state it takes, on a fake clock (test/helpers/coordinator-run.ts):
 * credentials per registration, re-registration under a live id, and state uploads only where the plan
 * asks for them. The same refusals over real gRPC: test/adversarial/coordinator-auth.test.ts.
 */

/** Phase 0 has 10 steps, evaluated every 4: tasks [0, 4), [4, 8), [8, 10); only the last asks rank 0 for its state. */
const LAST_TASK_END = { phaseIndex: 0, step: 10 };

describe('coordinator admission (fake clock)', () => {
  it('hands each registration a fresh credential that the calls after it must present', async () => {
    const { coordinator, register } = await startRun({ workers: ['a', 'b'], rendezvous: false });
    const a = register('a').credential;
    const b = register('b').credential;
    assert.notEqual(a, b);
    coordinator.authenticate('a', a);
    const unauthenticated = refusal(status.UNAUTHENTICATED, 'unauthenticated');
    assert.throws(() => coordinator.authenticate('a', b), unauthenticated);
    assert.throws(() => coordinator.authenticate('a', undefined), unauthenticated);
    // An unknown id gets the very same answer as a known one with a wrong credential: no oracle for ids.
    const messageOf = (call: () => void) => assert.throws(call, (error: Error) => unauthenticated(error) && /register first/.test(error.message));
    messageOf(() => coordinator.authenticate('nobody', undefined));
    messageOf(() => coordinator.authenticate('a', undefined));
    coordinator.workerLost('b', 'its process exited', 0);
    assert.throws(() => coordinator.authenticate('b', b), unauthenticated, 'a lost worker’s credential goes with it');
    coordinator.fail('test over');
  });

  it('lets a worker register again under its live id only with that id’s credential, which the new one then replaces', async () => {
    const { coordinator, register } = await startRun({ workers: ['a', 'b'], rendezvous: false });
    const first = register('a').credential;
    assert.throws(() => register('a'), refusal(status.ALREADY_EXISTS, 'already-registered'));
    assert.throws(() => register('a', 0, 'not-its-credential'), refusal(status.ALREADY_EXISTS, 'already-registered'));
    const second = register('a', 0, first).credential;
    assert.notEqual(second, first);
    assert.throws(() => coordinator.authenticate('a', first), refusal(status.UNAUTHENTICATED, 'unauthenticated'));
    coordinator.authenticate('a', second);
    // The replaced registration freed its place: the run still has room for b.
    register('b');
    coordinator.fail('test over');
  });

  it('takes a member that registers again while training as having left its generation: the run re-forms', async () => {
    const { coordinator, register } = await startRun({ workers: ['a', 'b'], rendezvous: false });
    const credential = register('a').credential;
    register('b');
    await Promise.all([coordinator.rendezvous('a', 0, 'cpu'), coordinator.rendezvous('b', 0, 'cpu')]);
    register('a', 0, credential);
    assert.equal(coordinator.lifecycle.status, 'recovering');
    const [ra] = await Promise.all([coordinator.rendezvous('a', 0, 'cpu'), coordinator.rendezvous('b', 1, 'cpu')]);
    assert.deepEqual([ra.generation, ra.worldSize], [2, 2]);
    coordinator.fail('test over');
  });

  it('takes rank 0’s state only at a point a task asked for, once, and checks the state is the one announced', async () => {
    const { coordinator } = await startRun({ workers: ['a', 'b'] });
    const notPermitted = refusal(status.PERMISSION_DENIED, 'not-permitted');
    const state = snapshot(coordinator.hash, 10);
    await assert.rejects(
      coordinator.receiveState('a', 1, LAST_TASK_END, state),
      (error: Error) => notPermitted(error) && /no task asked for it there; expected none/.test(error.message),
    );
    for (let finished = 0; finished < 3; finished++) {
      const [a, b] = await Promise.all([coordinator.nextTask('a', 1, finished), coordinator.nextTask('b', 1, finished)]);
      assert.equal(a.train?.uploadState, finished === 2);
      assert.equal(b.train?.uploadState, false, 'rank 1 is never asked');
    }
    await assert.rejects(
      coordinator.receiveState('b', 1, LAST_TASK_END, state),
      (error: Error) => notPermitted(error) && /worker b is rank 1 of generation 1: only rank 0/.test(error.message),
    );
    await assert.rejects(
      coordinator.receiveState('a', 1, { phaseIndex: 0, step: 1499 }, snapshot(coordinator.hash, 1499)),
      (error: Error) => notPermitted(error) && /phase 0 step 1499, but no task asked for it there; expected phase 0 step 10/.test(error.message),
    );
    await assert.rejects(
      coordinator.receiveState('a', 1, LAST_TASK_END, snapshot(coordinator.hash, 9)),
      refusal(status.FAILED_PRECONDITION, 'invalid-argument'),
    );
    await assert.rejects(
      coordinator.receiveState('a', 1, LAST_TASK_END, snapshot('another config', 10)),
      refusal(status.FAILED_PRECONDITION, 'config-mismatch'),
    );
    await coordinator.receiveState('a', 1, LAST_TASK_END, state);
    await assert.rejects(coordinator.receiveState('a', 1, LAST_TASK_END, state), notPermitted, 'the same upload twice');
    coordinator.fail('test over');
  });

  it('during a recovery takes offers from the generation that broke, up to the furthest point it reached', async () => {
    const { coordinator } = await startRun({ workers: ['a', 'b', 'c'] });
    // a fails in step 7 (6 done): that step counts as started, so the generation reached step 7.
    coordinator.reportFailure('a', 1, 'collective timed out waiting for c', true, { phaseIndex: 0, step: 6 });
    assert.equal(coordinator.lifecycle.status, 'recovering');
    await assert.rejects(
      coordinator.receiveState('b', 1, { phaseIndex: 0, step: 8 }, snapshot(coordinator.hash, 8)),
      (error: Error) =>
        refusal(status.PERMISSION_DENIED, 'not-permitted')(error) && /beyond phase 0 step 7, the furthest generation 1 reached/.test(error.message),
    );
    await coordinator.receiveState('b', 1, { phaseIndex: 0, step: 7 }, snapshot(coordinator.hash, 7));
    await assert.rejects(
      coordinator.receiveState('c', 0, { phaseIndex: 0, step: 7 }, snapshot(coordinator.hash, 7)),
      refusal(status.FAILED_PRECONDITION, 'stale-generation'),
    );
    coordinator.fail('test over');
  });
});
