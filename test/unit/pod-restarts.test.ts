import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { parseDuration } from '../../cli/duration.js';
import { type RunDirectoryContents, resumeOrStartDecision } from '../../cli/resume-or-start.js';
import { generationSize, uploadVerdict } from '../../coordinator/decisions.js';
import { RunStateMachine } from '../../coordinator/run-state.js';
import { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import { interruptOf, readHeartbeat, responseTo, StopRequested } from '../../worker/interrupts.js';

/** The pure parts of pods that restart into the same run: --resume-or-start, durations, the stopping run. */

const EMPTY: RunDirectoryContents = { storedHash: undefined, completed: false, checkpoints: 0, validCheckpoint: false };

describe('pods that restart into the same run', () => {
  it('--resume-or-start starts, starts in place, resumes, reports a completed run, and refuses another config or only damaged checkpoints', () => {
    assert.deepEqual(resumeOrStartDecision(EMPTY, 'a'), { action: 'start' });
    assert.deepEqual(resumeOrStartDecision({ ...EMPTY, storedHash: 'a' }, 'a'), { action: 'start-in-place' });
    assert.deepEqual(resumeOrStartDecision({ ...EMPTY, storedHash: 'a', checkpoints: 2, validCheckpoint: true }, 'a'), { action: 'resume' });
    assert.deepEqual(resumeOrStartDecision({ ...EMPTY, storedHash: 'a', checkpoints: 2, validCheckpoint: true, completed: true }, 'a'), {
      action: 'completed',
    });
    const other = resumeOrStartDecision({ ...EMPTY, storedHash: 'b', checkpoints: 1, validCheckpoint: true }, 'a');
    assert.equal(other.action, 'refuse');
    assert.match(JSON.stringify(other), /config hash a .*config hash b/);
    assert.equal(resumeOrStartDecision({ ...EMPTY, storedHash: 'a', checkpoints: 1 }, 'a').action, 'refuse');
  });

  it('reads durations with units, a bare number as seconds, and refuses anything else naming the flag', () => {
    assert.equal(parseDuration('10m', '--x'), 600_000);
    assert.equal(parseDuration('600s', '--x'), 600_000);
    assert.equal(parseDuration('600', '--x'), 600_000);
    assert.equal(parseDuration('1.5h', '--x'), 5_400_000);
    assert.equal(parseDuration('250ms', '--x'), 250);
    for (const bad of ['', '0', '-5s', '10 minutes', 'm', '1e3'])
      assert.throws(() => parseDuration(bad, '--connect-timeout'), /--connect-timeout: is not a positive duration/);
  });

  it('a stopping run forms no generation, takes offers up to where it reached, and ends interrupted', () => {
    const run = new RunStateMachine();
    run.start();
    run.stop('SIGTERM received');
    assert.equal(run.underWay, false);
    assert.equal(run.finished, false);
    assert.equal(generationSize('stopping', 3, 3, 1), 0);
    assert.equal(uploadVerdict('stopping', 1, { phaseIndex: 1, step: 5 }, [], { phaseIndex: 1, step: 6 }), 'offer');
    assert.equal(uploadVerdict('stopping', 1, { phaseIndex: 1, step: 7 }, [], { phaseIndex: 1, step: 6 }), 'beyond-reached');
    assert.equal(run.interrupt('SIGTERM received'), true);
    assert.deepEqual([run.status, run.interrupted, run.badInput], ['failed', true, false]);
    assert.throws(() => new RunStateMachine().stop('x'), /cannot go from pending to stopping/);
  });

  it('a worker offers its state when the coordinator stops and registers again; told to stop itself, it offers and leaves', () => {
    const news = readHeartbeat({ generation: 2, state: 'RUN_STATE_STOPPING', reason: '' }, 2);
    assert.equal(news?.kind, 'CoordinatorStopping');
    const refused = new CoordinatorCallError(status.UNAVAILABLE, 'coordinator-stopping', 'NextTask', 'c', 'stopping');
    assert.equal(interruptOf(refused, 'rendezvous', undefined)?.kind, 'CoordinatorStopping');
    assert.equal(interruptOf(new Error('exchange closed'), 'training', news)?.kind, 'CoordinatorStopping');
    assert.deepEqual(responseTo({ kind: 'CoordinatorStopping', reason: '' }), { next: 'registering', reportLeaving: true, offerCommittedState: true });
    assert.equal(interruptOf(new StopRequested('SIGTERM'), 'training', undefined)?.kind, 'Stopped');
    assert.deepEqual(responseTo({ kind: 'Stopped', reason: '' }), { next: 'stopped', reportLeaving: true, offerCommittedState: true });
  });
});
