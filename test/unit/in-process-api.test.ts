import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { InProcessCoordinatorApi } from '../../coordinator/in-process-api.js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import { createLogger } from '../../shared/logging.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import { interruptOf } from '../../worker/interrupts.js';

const TOKEN = 'in-process-test-token-0123';

const config = validateConfig(
  {
    model: { name: 'lenet300' },
    data: { dataset: 'mnist' },
    batchSize: 8,
    phases: [{ phase: 'dense', steps: 6, weights: { lr: 1e-3 } }],
    evaluation: { every: 3 },
  },
  'test',
);

const registration = (overrides: object = {}) => ({
  workerId: 'w0',
  address: 'in-process:0',
  dataAddress: 'in-process:0',
  joinToken: TOKEN,
  configHash: '',
  protocolVersion: PROTOCOL_VERSION,
  generation: 0,
  ...overrides,
});

async function refusalOf(call: Promise<unknown>): Promise<CoordinatorCallError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof CoordinatorCallError, String(error));
    return error;
  }
  assert.fail('the call was not refused');
}

describe('in-process coordinator API', () => {
  let coordinator: Coordinator;
  let api: InProcessCoordinatorApi;

  beforeEach(async () => {
    coordinator = await Coordinator.create({
      config,
      runId: 'in-process',
      joinToken: TOKEN,
      workers: 1,
      runDirectory: await RunDirectory.create(join(mkdtempSync(join(tmpdir(), 'autoprune-in-process-')), 'run'), config),
      events: new InProcessEventBus().publisher('in-process'),
      logger: createLogger({ name: 'test', level: 'silent' }),
      watchHeartbeats: false,
    });
    api = new InProcessCoordinatorApi(coordinator);
  });
  afterEach(() => {
    api.close();
    coordinator.fail('test over');
  });

  it('answers in the wire types: defaults filled in, the oneof named', async () => {
    const registered = await api.register(registration());
    assert.equal(registered.configHash, coordinator.hash);
    assert.equal(registered.heartbeatIntervalMs, 1000);
    const joined = await api.rendezvous('w0', 0, 'cpu');
    assert.deepEqual({ generation: joined.generation, rank: joined.rank, world: joined.worldSize }, { generation: 1, rank: 0, world: 1 });
    assert.ok(Buffer.isBuffer(joined.sessionKey));
    const task = await api.nextTask('w0', 1, 0);
    assert.equal(task.kind, 'train');
    assert.deepEqual(task.train, { phaseIndex: 0, fromStep: 0, toStep: 3, resetOptimizers: true, evaluate: true, uploadState: false, restoreState: false });
    assert.deepEqual(await api.heartbeat('w0', 1), { generation: 1, state: 'RUN_STATE_RUNNING', reason: '' });
  });

  it('turns a refusal into the CoordinatorCallError a gRPC client raises, with its status and reason', async () => {
    const token = await refusalOf(api.register(registration({ joinToken: 'wrong' })));
    assert.deepEqual([token.code, token.reason, token.method], [status.UNAUTHENTICATED, 'unauthenticated', 'Register']);
    assert.match(token.message, /^coordinator in this process refused Register: join token refused \(UNAUTHENTICATED\)$/);
    assert.equal(interruptOf(token, 'rendezvous', undefined), undefined, 'a wrong join token ends the worker');
    const unknown = await refusalOf(api.heartbeat('ghost', 0));
    assert.deepEqual([unknown.code, unknown.reason], [status.UNAUTHENTICATED, 'unauthenticated']);
    assert.equal(interruptOf(unknown, 'training', undefined)?.kind, 'CoordinatorLost');
  });

  it('presents the credential its own registration received, as the gRPC client does; another API without it is refused', async () => {
    await api.register(registration());
    const intruder = new InProcessCoordinatorApi(coordinator);
    try {
      for (const call of [
        intruder.heartbeat('w0', 0),
        intruder.rendezvous('w0', 0, 'cpu'),
        intruder.reportFailure('w0', 0, 'forged', false),
        intruder.fetchState('w0', 1, 0),
        intruder.uploadState('w0', 1, 0, 3, Buffer.alloc(0)),
      ]) {
        const refused = await refusalOf(call);
        assert.deepEqual([refused.code, refused.reason], [status.UNAUTHENTICATED, 'unauthenticated'], refused.message);
      }
      assert.equal(coordinator.lifecycle.status, 'pending', 'the forged failure report changed nothing');
      const again = await refusalOf(intruder.register(registration()));
      assert.deepEqual([again.code, again.reason], [status.ALREADY_EXISTS, 'already-registered']);
      assert.deepEqual(await api.heartbeat('w0', 0), { generation: 0, state: 'RUN_STATE_PENDING', reason: '' });
      // The worker itself may register again under its id: it holds the credential.
      await api.register(registration());
      assert.equal((await api.rendezvous('w0', 0, 'cpu')).generation, 1);
    } finally {
      intruder.close();
    }
  });

  it('refuses a report from an older generation as stale, which the agent takes as GenerationEnded', async () => {
    await api.register(registration());
    await api.rendezvous('w0', 0, 'cpu');
    const report = { workerId: 'w0', generation: 0, rank: 0, phaseIndex: 0, step: 1, loss: 1, accuracy: 0, remaining: 1 };
    const stale = await refusalOf(api.reportProgress(report));
    assert.deepEqual([stale.code, stale.reason, stale.method], [status.FAILED_PRECONDITION, 'stale-generation', 'ReportProgress']);
    assert.equal(interruptOf(stale, 'training', undefined)?.kind, 'GenerationEnded');
  });

  it('refuses calls once closed', async () => {
    api.close();
    await assert.rejects(api.heartbeat('w0', 0), /Heartbeat: the in-process coordinator API was closed/);
  });
});
