import assert from 'node:assert/strict';
import { FENCED_OUT_EXIT_STATUS, onWorkerExit, type WorkerExit } from '../../coordinator/local-workers.js';

/** The embedded launcher's restart policy: what it does when one of its worker processes exits. */

const exit = (overrides: Partial<WorkerExit>): WorkerExit => ({
  workerId: 'worker-1',
  code: null,
  signal: 'SIGKILL',
  ending: false,
  restarts: 0,
  maxRestarts: 3,
  ...overrides,
});

describe('embedded launcher: a worker process exits', () => {
  it('replaces a worker that dies while the run goes on, by signal or by status', () => {
    assert.deepEqual(onWorkerExit(exit({})), { action: 'replace', how: 'on SIGKILL' });
    assert.deepEqual(onWorkerExit(exit({ code: 1, signal: null, restarts: 2 })), { action: 'replace', how: 'with status 1' });
  });

  it('gives up past --max-restarts, naming the worker, how it exited and the limit', () => {
    assert.deepEqual(onWorkerExit(exit({ restarts: 3 })), {
      action: 'give-up',
      how: 'on SIGKILL',
      reason: 'worker worker-1 exited on SIGKILL, and --max-restarts is 3 (all 3 replacements used)',
    });
    const none = onWorkerExit(exit({ code: 137, signal: null, maxRestarts: 0 }));
    assert.equal(none.action === 'give-up' && none.reason, 'worker worker-1 exited with status 137, and --max-restarts is 0 (no replacements allowed)');
  });

  it('lets a fenced-out worker leave without a replacement, whatever is left of the limit', () => {
    assert.deepEqual(onWorkerExit(exit({ code: FENCED_OUT_EXIT_STATUS, signal: null })), {
      action: 'leave',
      how: `with status ${FENCED_OUT_EXIT_STATUS} (fenced out)`,
    });
    assert.equal(onWorkerExit(exit({ code: FENCED_OUT_EXIT_STATUS, signal: null, restarts: 3 })).action, 'leave');
  });

  it('does nothing once the run is over or the launcher stops its workers, or for a worker that finished', () => {
    assert.deepEqual(onWorkerExit(exit({ ending: true })), { action: 'none' });
    assert.deepEqual(onWorkerExit(exit({ ending: true, restarts: 3 })), { action: 'none' });
    assert.deepEqual(onWorkerExit(exit({ code: 0, signal: null })), { action: 'none' });
  });
});
