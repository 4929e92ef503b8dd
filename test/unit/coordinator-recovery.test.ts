import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { decodeCheckpointSnapshot } from '../../shared/checkpoint.js';
import { refusal, snapshot, startRun } from '../helpers/coordinator-run.js';

/** The coordinator's recovery on a fake clock (test/helpers/coordinator-run.ts). */

describe('coordinator recovery (fake clock)', () => {
  it('declares a worker lost only once it has been silent past the heartbeat timeout, and re-forms without it', async () => {
    const { coordinator, clock, tickAfter, published } = await startRun({ workers: ['a', 'b'] });
    tickAfter(2000, ['a']);
    tickAfter(1000, ['a']);
    assert.equal(coordinator.lifecycle.status, 'running', 'b silent for exactly the 3 s timeout');
    tickAfter(1, ['a']);
    assert.equal(coordinator.lifecycle.status, 'recovering');
    assert.deepEqual(
      (await published('failure.detected')).map((e) => e.data),
      [{ workerId: 'b', how: 'no heartbeat for 3.0 s', detectSeconds: 3.001, generation: 1 }],
    );
    assert.equal((await published('worker.left'))[0]?.data.workerId, 'b');
    assert.deepEqual(coordinator.heartbeat('a'), { generation: 2, state: 'RUN_STATE_RUNNING', reason: '' });

    clock.advance(500);
    const reply = await coordinator.rendezvous('a', 1, 'cpu');
    assert.deepEqual([reply.generation, reply.worldSize], [2, 1]);
    assert.equal(coordinator.lifecycle.status, 'running');
    assert.deepEqual(
      (await published('recovery.completed')).map((e) => e.data),
      [{ generation: 2, workers: 1, recoverSeconds: 0.5, stepsRedone: 0, from: { phaseIndex: 0, step: 0 } }],
    );
    coordinator.fail('test over');
  });

  it('drops a registered worker outside the running generation without re-forming the run', async () => {
    const { coordinator, register, tickAfter, published } = await startRun({
      workers: ['a', 'b', 'c'],
      rendezvous: false,
      distributed: { rendezvousTimeoutSeconds: 1, minWorkers: 2 },
    });
    for (const id of ['a', 'b', 'c']) register(id);
    const joined = Promise.all(['a', 'b'].map((id) => coordinator.rendezvous(id, 0, 'cpu')));
    tickAfter(1001, ['a', 'b', 'c']);
    assert.deepEqual(
      (await joined).map((reply) => reply.worldSize),
      [2, 2],
    );
    tickAfter(3001, ['a', 'b']);
    assert.equal(coordinator.lifecycle.status, 'running');
    assert.deepEqual(await published('failure.detected'), []);
    assert.deepEqual(
      (await published('worker.left')).map((e) => e.data.workerId),
      ['c'],
    );
    coordinator.fail('test over');
  });

  it('leaves silence alone when heartbeats are not watched', async () => {
    const { coordinator, tickAfter } = await startRun({ workers: ['a'], watchHeartbeats: false });
    tickAfter(60_000, []);
    assert.equal(coordinator.lifecycle.status, 'running');
    coordinator.fail('test over');
  });

  it('below minWorkers waits rejoinWaitSeconds for replacements, then fails with the first failure’s reason', async () => {
    const { coordinator, tickAfter, published } = await startRun({ workers: ['a', 'b'], distributed: { minWorkers: 2, rejoinWaitSeconds: 5 } });
    coordinator.workerLost('b', 'its process exited', 0);
    const aborted = assert.rejects(coordinator.rendezvous('a', 1, 'cpu'), refusal(status.ABORTED, 'rendezvous-aborted'));
    tickAfter(4999, ['a']);
    assert.equal(coordinator.lifecycle.status, 'recovering', 'still within the wait, and one worker forms no generation');
    tickAfter(1, ['a']);
    assert.equal(coordinator.lifecycle.status, 'failed');
    const reason = 'worker b at 127.0.0.1:98 was lost (its process exited); only 1 of the 2 workers needed came back within 5 s';
    assert.equal(coordinator.lifecycle.reason, reason);
    assert.deepEqual(
      (await published('run.failed')).map((e) => e.data.reason),
      [reason],
    );
    await aborted;
  });

  it('goes on when a replacement registers within the wait', async () => {
    const { coordinator, register, tickAfter } = await startRun({ workers: ['a', 'b'], distributed: { minWorkers: 2, rejoinWaitSeconds: 5 } });
    coordinator.workerLost('b', 'its process exited', 0);
    const survivor = coordinator.rendezvous('a', 1, 'cpu');
    tickAfter(3000, ['a']);
    register('c');
    const [reply] = await Promise.all([survivor, coordinator.rendezvous('c', 0, 'cpu')]);
    assert.deepEqual([reply.generation, reply.worldSize], [2, 2]);
    tickAfter(3000, ['a', 'c']);
    assert.equal(coordinator.lifecycle.status, 'running');
    coordinator.fail('test over');
  });

  it('goes on from the furthest state the survivors offer and counts the steps redone', async () => {
    const { coordinator, published } = await startRun({ workers: ['a', 'b'] });
    const progress = (workerId: string, rank: number, step: number) => ({
      workerId,
      generation: 1,
      rank,
      phaseIndex: 0,
      step,
      loss: 1,
      accuracy: 0.5,
      auxLoss: Number.NaN,
      remaining: 1,
      imagesPerSecond: 100,
      inputWaitSeconds: 0,
      exchangeSeconds: 0,
      skipped: [],
      checksum: '',
    });
    coordinator.reportProgress(progress('a', 0, 4));
    coordinator.reportProgress(progress('b', 1, 4));
    // a fails in step 7 (6 done): that step counts as started.
    coordinator.reportFailure('a', 1, 'collective timed out waiting for b', true, { phaseIndex: 0, step: 6 });
    assert.equal(coordinator.lifecycle.status, 'recovering');
    await coordinator.receiveState('a', 1, { phaseIndex: 0, step: 5 }, snapshot(coordinator.hash, 5));
    await coordinator.receiveState('b', 1, { phaseIndex: 0, step: 4 }, snapshot(coordinator.hash, 4));
    await Promise.all([coordinator.rendezvous('a', 1, 'cpu'), coordinator.rendezvous('b', 1, 'cpu')]);
    const [recovery] = await published('recovery.completed');
    assert.deepEqual(recovery?.data.from, { phaseIndex: 0, step: 5 });
    assert.equal(recovery?.data.stepsRedone, 2);
    const task = await coordinator.nextTask('a', 2, 0);
    assert.deepEqual([task.train?.fromStep, task.train?.restoreState], [5, true]);
    assert.equal(decodeCheckpointSnapshot(coordinator.initialState('a', 2, 0), 'test').position.step, 5);
    coordinator.fail('test over');
  });

  it('refuses calls tagged with a generation the run has left behind', async () => {
    const { coordinator, register } = await startRun({ workers: ['a', 'b'] });
    coordinator.workerLost('b', 'its process exited', 0);
    await coordinator.rendezvous('a', 1, 'cpu');
    assert.throws(() => coordinator.initialState('a', 1, 0), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    await assert.rejects(coordinator.nextTask('a', 1, 0), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    await assert.rejects(coordinator.rendezvous('a', 3, 'cpu'), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    assert.throws(() => register('b', 1), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    // A failure report about the old generation changes nothing.
    coordinator.reportFailure('a', 1, 'late news', false, { phaseIndex: 0, step: 0 });
    assert.equal(coordinator.lifecycle.status, 'running');
    coordinator.fail('test over');
  });

  it('after a coordinator restart numbers generations on from the run directory’s generation file', async () => {
    const { coordinator, register, runDirectory } = await startRun({ workers: ['a', 'b'], recordedGeneration: 7, rendezvous: false });
    assert.throws(() => register('a', 5), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    register('a', 7); // a worker of the coordinator before the restart registers again
    register('b');
    const [reply] = await Promise.all([coordinator.rendezvous('a', 7, 'cpu'), coordinator.rendezvous('b', 0, 'cpu')]);
    assert.equal(reply.generation, 8);
    // The generation is recorded while the run goes on: wait for the file to say so.
    for (let tries = 0; tries < 400 && (await runDirectory.lastGeneration()) !== 8; tries++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(await runDirectory.lastGeneration(), 8);
    assert.throws(() => coordinator.initialState('a', 7, 0), refusal(status.FAILED_PRECONDITION, 'stale-generation'));
    coordinator.fail('test over');
  });

  it('fails the run on the recovery beyond distributed.maxRecoveries; joins do not count', async () => {
    const { coordinator, register, published } = await startRun({ workers: ['a', 'b', 'c'], distributed: { maxRecoveries: 1 } });
    coordinator.workerLost('c', 'its process exited', 0);
    await Promise.all([coordinator.rendezvous('a', 1, 'cpu'), coordinator.rendezvous('b', 1, 'cpu')]);
    register('d');
    assert.equal(coordinator.lifecycle.status, 'recovering');
    await Promise.all(['a', 'b', 'd'].map((id) => coordinator.rendezvous(id, id === 'd' ? 0 : 2, 'cpu')));
    assert.deepEqual(coordinator.lifecycle.state, { status: 'running', recoveries: 1 });
    coordinator.workerLost('b', 'its process exited', 0);
    const reason = 'recovery 2 exceeds distributed.maxRecoveries (1); last failure: worker b at 127.0.0.1:98 was lost (its process exited)';
    assert.equal(coordinator.lifecycle.reason, reason);
    assert.equal((await coordinator.outcome()).status, 'failed');
    assert.deepEqual(
      (await published('run.failed')).map((e) => e.data.reason),
      [reason],
    );
  });

  it('starts with the workers waiting once distributed.rendezvousTimeoutSeconds have passed, if they are at least minWorkers', async () => {
    const distributed = { minWorkers: 2, rendezvousTimeoutSeconds: 10 };
    const { coordinator, register, tickAfter, published } = await startRun({ workers: ['a', 'b', 'c'], distributed, rendezvous: false });
    register('a');
    register('b');
    const joined = Promise.all([coordinator.rendezvous('a', 0, 'cpu'), coordinator.rendezvous('b', 0, 'cpu')]);
    tickAfter(9999, ['a', 'b']);
    assert.equal(coordinator.lifecycle.status, 'pending', 'within the timeout the run waits for all three');
    tickAfter(1, ['a', 'b']);
    const [ra, rb] = await joined;
    assert.deepEqual([ra.generation, ra.worldSize, ra.rank, rb.rank], [1, 2, 0, 1]);
    assert.equal(coordinator.lifecycle.status, 'running');
    assert.equal((await published('run.started'))[0]?.data.workers, 2);
    // The third comes late: it joins at the next generation, as a worker joining a run under way does.
    register('c');
    assert.equal(coordinator.lifecycle.status, 'recovering');
    coordinator.fail('test over');
  });

  it('fails a run that too few workers wait for, naming the workers that registered and left and how many are missing', async () => {
    const distributed = { minWorkers: 2, rendezvousTimeoutSeconds: 10 };
    const { coordinator, register, tickAfter, published } = await startRun({ workers: ['a', 'b', 'c'], distributed, rendezvous: false });
    register('a');
    register('b');
    const waiting = assert.rejects(coordinator.rendezvous('a', 0, 'cpu'), refusal(status.ABORTED, 'rendezvous-aborted'));
    tickAfter(4000, ['a']);
    assert.equal(coordinator.lifecycle.status, 'pending', 'b left before the run started: the run waits on');
    tickAfter(5999, ['a']);
    assert.equal(coordinator.lifecycle.status, 'pending');
    tickAfter(1, ['a']);
    const reason =
      'the run did not start within distributed.rendezvousTimeoutSeconds (10 s): 1 of the 2 workers needed (distributed.minWorkers) ' +
      'waited at the rendezvous, 1 missing; workers that registered and left: b (no heartbeat for 4.0 s)';
    assert.equal(coordinator.lifecycle.reason, reason);
    assert.deepEqual(
      (await published('run.failed')).map((e) => e.data.reason),
      [reason],
    );
    await waiting;
  });

  it('forgets a worker that left before the run started once it registers again', async () => {
    const distributed = { minWorkers: 2, rendezvousTimeoutSeconds: 10 };
    const { coordinator, register, tickAfter } = await startRun({ workers: ['a', 'b'], distributed, rendezvous: false });
    register('a');
    register('b');
    coordinator.workerLost('b', 'its process exited', 0);
    register('b');
    const joined = Promise.all([coordinator.rendezvous('a', 0, 'cpu'), coordinator.rendezvous('b', 0, 'cpu')]);
    assert.deepEqual(
      (await joined).map((r) => r.worldSize),
      [2, 2],
    );
    tickAfter(10_000, ['a', 'b']);
    assert.equal(coordinator.lifecycle.status, 'running');
    coordinator.fail('test over');
  });
});
