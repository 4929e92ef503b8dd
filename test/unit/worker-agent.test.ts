import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CollectiveError } from '../../collective/index.js';
import { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import type { RefusalReason } from '../../shared/rpc/failure.js';
import { AgentLifecycle, type AgentState } from '../../worker/agent-lifecycle.js';
import { type Interrupt, interruptOf, readHeartbeat, responseTo } from '../../worker/interrupts.js';

function refusal(code: status, reason: RefusalReason | undefined, details = 'refused'): CoordinatorCallError {
  return new CoordinatorCallError(code, reason, 'NextTask', '127.0.0.1:7070', details);
}

const unreachable = refusal(status.UNAVAILABLE, undefined, 'No connection established');
const staleGeneration = refusal(status.FAILED_PRECONDITION, 'stale-generation', 'stale generation 2: the run is at generation 3');
const peerSilent = new CollectiveError('worker w1 (127.0.0.1:7071, rank 1) sent nothing for 1000 ms');
const generationEnded: Interrupt = { kind: 'GenerationEnded', reason: 'the run moves on to generation 3' };

/** Runs `moves` from a fresh lifecycle and returns the states it went through. */
function walk(...moves: AgentState[]): AgentState[] {
  const seen: AgentState[] = [];
  const lifecycle = new AgentLifecycle((_, to) => seen.push(to));
  for (const move of moves) lifecycle.moveTo(move);
  return seen;
}

describe('worker agent: interrupts', () => {
  it('takes an unanswered call, or a coordinator that no longer knows the worker, as CoordinatorLost, wherever the worker is', () => {
    const unknown = refusal(status.NOT_FOUND, 'unknown-worker', 'worker w0 is not registered in run r');
    for (const during of ['rendezvous', 'training'] as const) {
      assert.equal(interruptOf(unreachable, during, undefined)?.kind, 'CoordinatorLost');
      assert.equal(interruptOf(unknown, during, undefined)?.kind, 'CoordinatorLost');
    }
    assert.equal(interruptOf(unreachable, 'training', { kind: 'RunFailed', reason: 'x' })?.kind, 'CoordinatorLost');
  });

  it('takes a call refused as unauthenticated after registering as CoordinatorLost (it no longer knows the credential), but not a refused Register', () => {
    const forgotten = refusal(status.UNAUTHENTICATED, 'unauthenticated', 'the call needs the credential of a current registration');
    for (const during of ['rendezvous', 'training'] as const) assert.equal(interruptOf(forgotten, during, undefined)?.kind, 'CoordinatorLost');
    const wrongToken = new CoordinatorCallError(status.UNAUTHENTICATED, 'unauthenticated', 'Register', '127.0.0.1:7070', 'join token refused');
    for (const during of ['rendezvous', 'training'] as const) assert.equal(interruptOf(wrongToken, during, undefined), undefined);
  });

  it('takes a stale-generation or not-a-member refusal while training as GenerationEnded, and a collective failure as CollectiveFailed', () => {
    assert.deepEqual(interruptOf(staleGeneration, 'training', undefined), { kind: 'GenerationEnded', reason: staleGeneration.message });
    assert.equal(interruptOf(refusal(status.FAILED_PRECONDITION, 'not-a-member'), 'training', undefined)?.kind, 'GenerationEnded');
    assert.deepEqual(interruptOf(peerSilent, 'training', undefined), { kind: 'CollectiveFailed', reason: peerSilent.message });
  });

  it('decides from the refusal reason, never from the message', () => {
    const wordy = refusal(status.FAILED_PRECONDITION, 'invalid-argument', 'worker w0 reports task 3 finished in generation 2, but its last task was 1');
    assert.equal(interruptOf(wordy, 'training', undefined), undefined);
    assert.equal(interruptOf(new Error('generation 2 ended'), 'training', undefined), undefined);
    // The same status without a reason (the coordinator failed inside) is no interrupt either.
    assert.equal(interruptOf(refusal(status.FAILED_PRECONDITION, undefined, 'stale generation'), 'training', undefined), undefined);
  });

  it('ends the worker on refusals that leave nothing to rejoin', () => {
    for (const reason of ['config-mismatch', 'run-finished', 'rendezvous-aborted', 'protocol-version', 'not-permitted'] as const) {
      assert.equal(interruptOf(refusal(status.FAILED_PRECONDITION, reason), 'training', undefined), undefined, reason);
    }
    assert.equal(interruptOf(refusal(status.INTERNAL, undefined), 'training', undefined), undefined);
  });

  it('at the rendezvous, rejoins only a lost coordinator', () => {
    assert.equal(interruptOf(staleGeneration, 'rendezvous', undefined), undefined);
    assert.equal(interruptOf(peerSilent, 'rendezvous', undefined), undefined);
  });

  it('follows the heartbeats: a newer generation interrupts whatever the training failed with; a failed run ends the worker', () => {
    assert.deepEqual(interruptOf(new Error('its all-reducer was closed'), 'training', generationEnded), generationEnded);
    assert.equal(interruptOf(peerSilent, 'training', { kind: 'RunFailed', reason: 'worker w1: out of memory' }), undefined);
  });
});

describe('worker agent: heartbeat replies', () => {
  it('reads a failed run, a newer generation, or nothing to act on', () => {
    assert.deepEqual(readHeartbeat({ generation: 2, state: 'RUN_STATE_FAILED', reason: 'interrupted' }, 2), { kind: 'RunFailed', reason: 'interrupted' });
    assert.deepEqual(readHeartbeat({ generation: 3, state: 'RUN_STATE_RUNNING', reason: '' }, 2), generationEnded);
    assert.equal(readHeartbeat({ generation: 2, state: 'RUN_STATE_RUNNING', reason: '' }, 2), undefined);
    // Not in a generation yet (registering, at the first rendezvous): a newer one is no news.
    assert.equal(readHeartbeat({ generation: 1, state: 'RUN_STATE_PENDING', reason: '' }, 0), undefined);
  });
});

describe('worker agent: responses and states', () => {
  it('registers again after CoordinatorLost, without reporting or offering state', () => {
    assert.deepEqual(responseTo({ kind: 'CoordinatorLost', reason: 'gone' }), { next: 'registering', reportLeaving: false, offerCommittedState: false });
  });

  it('after GenerationEnded or CollectiveFailed reports where it stood, offers its committed state and rejoins', () => {
    for (const interrupt of [generationEnded, { kind: 'CollectiveFailed', reason: peerSilent.message }] as const) {
      assert.deepEqual(responseTo(interrupt), { next: 'rejoining', reportLeaving: true, offerCommittedState: true });
    }
  });

  it('moves from training through each response back to the rendezvous, and from a lost coordinator at the rendezvous', () => {
    for (const kind of ['GenerationEnded', 'CoordinatorLost', 'CollectiveFailed'] as const) {
      const { next } = responseTo({ kind, reason: '' });
      assert.deepEqual(walk('registering', 'rendezvous', 'training', next, 'rendezvous', 'training', 'finished').slice(3, 5), [next, 'rendezvous']);
    }
    const { next } = responseTo({ kind: 'CoordinatorLost', reason: '' });
    assert.deepEqual(walk('registering', 'rendezvous', next, 'rendezvous'), ['registering', 'rendezvous', 'registering', 'rendezvous']);
  });

  it('refuses moves the state machine does not have, naming them', () => {
    assert.throws(() => walk('rendezvous'), /no move from starting to rendezvous/);
    assert.throws(() => walk('registering', 'rendezvous', 'training', 'rejoining', 'training'), /no move from rejoining to training/);
    assert.throws(() => walk('registering', 'rendezvous', 'training', 'finished', 'failed'), /no move from finished to failed/);
    assert.throws(() => walk('registering', 'rendezvous', 'rejoining'), /no move from rendezvous to rejoining/);
  });

  it('can fail from every state but the two ends', () => {
    const paths: AgentState[][] = [
      [],
      ['registering'],
      ['registering', 'rendezvous'],
      ['registering', 'rendezvous', 'training'],
      ['registering', 'rendezvous', 'training', 'rejoining'],
    ];
    for (const path of paths) assert.equal(walk(...path, 'failed').at(-1), 'failed');
  });
});
