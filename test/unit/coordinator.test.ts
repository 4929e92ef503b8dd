import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Coordinator } from '../../coordinator/coordinator.js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { planTasks } from '../../coordinator/task-plan.js';
import { validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import type { RunEvent } from '../../shared/events/types.js';
import { createLogger } from '../../shared/logging.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import type { RpcFailure } from '../../shared/rpc/failure.js';

const TOKEN = 'coordinator-test-token-0123';

function config(overrides: Record<string, unknown> = {}) {
  return validateConfig(
    {
      model: { name: 'lenet300' },
      data: { dataset: 'mnist' },
      batchSize: 8,
      phases: [
        { phase: 'dense', steps: 10, weights: { lr: 1e-3 } },
        { phase: 'prune', steps: 5, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
      ],
      evaluation: { every: 4 },
      ...overrides,
    },
    'test',
  );
}

describe('task plan', () => {
  it('cuts each phase at its evaluation points; the last task of a phase uploads the state', () => {
    const tasks = planTasks(config());
    assert.deepEqual(
      tasks.map((t) => [t.id, t.phaseIndex, t.fromStep, t.toStep, t.resetOptimizers, t.uploadState]),
      [
        [1, 0, 0, 4, true, false],
        [2, 0, 4, 8, false, false],
        [3, 0, 8, 10, false, true],
        [4, 1, 0, 4, true, false],
        [5, 1, 4, 5, false, true],
      ],
    );
  });

  it('gives a whole phase as one task without periodic evaluation, and a zero-step phase one task', () => {
    const tasks = planTasks(
      config({
        evaluation: { every: 0 },
        phases: [
          { phase: 'dense', steps: 0, weights: { lr: 1e-3 } },
          { phase: 'finetune', steps: 7, weights: { lr: 1e-3 } },
        ],
      }),
    );
    assert.deepEqual(
      tasks.map((t) => [t.phaseIndex, t.fromStep, t.toStep, t.uploadState]),
      [
        [0, 0, 0, true],
        [1, 0, 7, true],
      ],
    );
  });
});

describe('task plan with time-based checkpoints', () => {
  it('ends tasks at every logging interval, where the coordinator may ask for a checkpoint', () => {
    const tasks = planTasks(config({ evaluation: { every: 0 }, logging: { every: 3 }, checkpoint: { seconds: 30 } }));
    assert.deepEqual(
      tasks.filter((t) => t.phaseIndex === 0).map((t) => [t.fromStep, t.toStep, t.uploadState]),
      [
        [0, 3, false],
        [3, 6, false],
        [6, 9, false],
        [9, 10, true],
      ],
    );
  });

  it('resumes mid-phase with the state restored, and after a phase end at the next phase', () => {
    assert.deepEqual(
      planTasks(config(), { phaseIndex: 0, step: 6 })
        .slice(0, 2)
        .map((t) => [t.phaseIndex, t.fromStep, t.toStep, t.restoreState, t.resetOptimizers]),
      [
        [0, 6, 8, true, false],
        [0, 8, 10, false, false],
      ],
    );
    assert.deepEqual(planTasks(config(), { phaseIndex: 0, step: 10 })[0], {
      id: 1,
      phaseIndex: 1,
      fromStep: 0,
      toStep: 4,
      resetOptimizers: true,
      restoreState: true,
      evaluate: true,
      uploadState: false,
    });
  });
});

describe('coordinator (in process)', () => {
  async function twoWorkerRun() {
    const bus = new InProcessEventBus();
    const events: RunEvent[] = [];
    const subscription = await bus.subscribe('unit');
    void (async () => {
      for await (const e of subscription) events.push(e);
    })();
    const coordinator = await Coordinator.create({
      config: config(),
      runDirectory: await RunDirectory.create(join(mkdtempSync(join(tmpdir(), 'autoprune-coord-')), 'run'), config()),
      runId: 'unit',
      joinToken: TOKEN,
      workers: 2,
      events: bus.publisher('unit'),
      logger: createLogger({ name: 'test', level: 'silent' }),
    });
    for (const id of ['a', 'b']) {
      coordinator.register({
        workerId: id,
        address: `127.0.0.1:${id === 'a' ? 1 : 2}`,
        dataAddress: '127.0.0.1:3',
        capabilities: null,
        joinToken: TOKEN,
        configHash: '',
        protocolVersion: PROTOCOL_VERSION,
        generation: 0,
      });
    }
    const [ra, rb] = await Promise.all([coordinator.rendezvous('a', 0, 'wasm'), coordinator.rendezvous('b', 0, 'wasm')]);
    return { coordinator, events, ra, rb };
  }

  const progress = (workerId: string, rank: number, checksum: string) => ({
    workerId,
    generation: 1,
    rank,
    phaseIndex: 0,
    step: 4,
    loss: 1,
    accuracy: 0.5,
    auxLoss: Number.NaN,
    remaining: 1,
    imagesPerSecond: 100,
    inputWaitSeconds: 0,
    exchangeSeconds: 0,
    skipped: [],
    checksum,
  });

  it('forms generation 1 with ranks in registration order and one shared session key', async () => {
    const { coordinator, ra, rb } = await twoWorkerRun();
    assert.equal(ra.generation, 1);
    assert.deepEqual([ra.rank, rb.rank, ra.worldSize], [0, 1, 2]);
    assert.deepEqual(
      ra.ring?.map((p) => p.workerId),
      ['a', 'b'],
    );
    assert.ok(Buffer.from(ra.sessionKey as Uint8Array).equals(Buffer.from(rb.sessionKey as Uint8Array)));
    assert.equal(coordinator.lifecycle.status, 'running');
    coordinator.fail('test over');
  });

  it('publishes one step event per step with both ranks aggregated, and stops the run when checksums differ', async () => {
    const { coordinator, events } = await twoWorkerRun();
    coordinator.reportProgress(progress('a', 0, 'abc'));
    coordinator.reportProgress(progress('b', 1, 'abc'));
    await new Promise((resolve) => setImmediate(resolve));
    const step = events.find((e): e is RunEvent<'step'> => e.event === 'step')!;
    assert.equal(step.data.imagesPerSecond, 200);
    assert.equal(step.data.workers, 2);
    assert.equal(coordinator.lifecycle.status, 'running');

    coordinator.reportProgress({ ...progress('a', 0, 'abc'), step: 8 });
    coordinator.reportProgress({ ...progress('b', 1, 'abd'), step: 8 });
    assert.equal(coordinator.lifecycle.status, 'failed');
    assert.match(coordinator.lifecycle.reason!, /replicas diverged at phase 0 step 8: .*rank 0 \(a\) abc, rank 1 \(b\) abd/);
    const task = await coordinator.nextTask('a', 1, 0);
    assert.equal(task.finish?.state, 'RUN_STATE_FAILED');
  });

  it('sends a worker that waits for the run to end back to the rendezvous when another fails', async () => {
    const { coordinator } = await twoWorkerRun();
    const tasks = planTasks(config()).length;
    for (let finished = 0; finished < tasks; finished++) await coordinator.nextTask('a', 1, finished);
    const waiting = coordinator.nextTask('a', 1, tasks);
    coordinator.workerLost('b', 'its process exited', 0);
    await assert.rejects(waiting, (e: RpcFailure) => /generation 1 is re-forming after a failure/.test(e.message));
    coordinator.fail('test over');
  });

  it('fences out calls tagged with another generation', async () => {
    const { coordinator } = await twoWorkerRun();
    assert.throws(
      () => coordinator.reportProgress({ ...progress('a', 0, ''), generation: 0 }),
      (e: RpcFailure) => /stale generation 0: the run is at generation 1/.test(e.message),
    );
    coordinator.fail('test over');
  });

  it('refuses a batch smaller than the world', async () => {
    await assert.rejects(
      Coordinator.create({
        config: config({ batchSize: 1 }),
        runId: 'x',
        joinToken: TOKEN,
        workers: 2,
        runDirectory: await RunDirectory.create(join(mkdtempSync(join(tmpdir(), 'autoprune-coord-')), 'run'), config()),
        events: new InProcessEventBus().publisher('x'),
        logger: createLogger({ name: 't', level: 'silent' }),
      }),
      /batchSize: 1 is smaller than the 2 workers/,
    );
  });
});
