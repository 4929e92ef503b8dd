import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import type { RefusalReason } from '../../shared/rpc/failure.js';
import { asksWhetherStillKnown, fencedOutBy, fencedOutMessage } from '../../worker/agent-decisions.js';
import { AgentLifecycle, type AgentState } from '../../worker/agent-lifecycle.js';

function refusal(method: string, code: status, reason: RefusalReason | undefined, details = 'refused'): CoordinatorCallError {
  return new CoordinatorCallError(code, reason, method, '127.0.0.1:7070', details);
}

const runFull = refusal('Register', status.RESOURCE_EXHAUSTED, 'run-full', 'run r already has its 2 workers');

describe('worker agent: decisions beyond its interrupts', () => {
  it('asks whether the coordinator still knows it only when its rendezvous was called off', () => {
    assert.equal(asksWhetherStillKnown(refusal('Rendezvous', status.ABORTED, 'rendezvous-aborted', 'worker w0 was lost')), true);
    for (const reason of ['stale-generation', 'unknown-worker', 'run-finished', undefined] as const) {
      assert.equal(asksWhetherStillKnown(refusal('Rendezvous', status.FAILED_PRECONDITION, reason)), false, String(reason));
    }
    // The reason decides, never the words.
    assert.equal(asksWhetherStillKnown(new Error('rendezvous-aborted')), false);
  });

  it('is fenced out when a re-registration is refused because its place was taken or its generation is past', () => {
    assert.equal(fencedOutBy(runFull, true), true);
    assert.equal(fencedOutBy(refusal('Register', status.FAILED_PRECONDITION, 'stale-generation'), true), true);
  });

  it('is not fenced out by a first registration refused so, nor by any other refusal', () => {
    assert.equal(fencedOutBy(runFull, false), false);
    for (const reason of ['unauthenticated', 'config-mismatch', 'run-finished', 'already-registered', undefined] as const) {
      assert.equal(fencedOutBy(refusal('Register', status.FAILED_PRECONDITION, reason), true), false, String(reason));
    }
  });

  it('says which run goes on without it, and why', () => {
    assert.equal(
      fencedOutMessage('mnist-1', runFull.message),
      'fenced out of run mnist-1: the run goes on without this worker (coordinator 127.0.0.1:7070 refused Register: run r already has its 2 workers (RESOURCE_EXHAUSTED))',
    );
  });

  it('reaches fenced from registering only, and moves nowhere after', () => {
    const seen: AgentState[] = [];
    const lifecycle = new AgentLifecycle((_, to) => seen.push(to));
    for (const move of ['registering', 'rendezvous', 'training', 'registering', 'fenced'] as const) lifecycle.moveTo(move);
    assert.deepEqual(seen, ['registering', 'rendezvous', 'training', 'registering', 'fenced']);
    assert.throws(() => lifecycle.moveTo('failed'), /no move from fenced to failed/);
    const training = new AgentLifecycle();
    for (const move of ['registering', 'rendezvous', 'training'] as const) training.moveTo(move);
    assert.throws(() => training.moveTo('fenced'), /no move from training to fenced/);
  });
});
