import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { type ServingCoordinator, serveCoordinator } from '../../coordinator/serve.js';
import { encodeCheckpointSnapshot } from '../../shared/checkpoint.js';
import { validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import { createLogger } from '../../shared/logging.js';
import type { CoordinatorClient } from '../../shared/proto/generated/autoprune/v1/Coordinator.js';
import { loadCoordinatorProto, PROTOCOL_VERSION } from '../../shared/proto/load.js';
import type { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import { refusalReasonOf } from '../../shared/rpc/failure.js';
import { CREDENTIAL_METADATA_KEY } from '../../shared/rpc/security.js';
import { CoordinatorConnection } from '../../worker/coordinator-client.js';

/**
 * The attacks of the hardening review, over real gRPC on loopback: a real coordinator (serveCoordinator)
 * with two registered workers in generation 1, and a raw grpc-js client that has neither the join token
 * nor a worker's credential, naming the workers' ids. Each call must be refused with its status and
 * reason, and the run must go on as if nothing had happened.
 */

const TOKEN = 'coordinator-auth-token-0123456789';
const config = validateConfig(
  {
    seed: 3,
    model: { name: 'lenet300', dropout: 0 },
    data: { dataset: 'mnist', trainSubset: 1200, testSubset: 300 },
    batchSize: 64,
    // Tasks: phase 0 steps [0, 8) and [8, 12), phase 1 the same; rank 0 is asked for its state at each phase's end.
    phases: [
      { phase: 'dense', steps: 12, weights: { lr: 1e-3 } },
      { phase: 'prune', steps: 12, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
    ],
    evaluation: { every: 8, batchSize: 300 },
    logging: { every: 4 },
    // The test's workers are driven by hand and send no heartbeats of their own.
    distributed: { heartbeat: { intervalSeconds: 1, timeoutSeconds: 600 } },
  },
  'coordinator-auth test',
);

/** A refused call as the raw client sees it: its status, reason and message. */
interface Refusal {
  readonly code: grpc.status;
  readonly reason: string | undefined;
  readonly details: string;
}

function refusalOf<T>(start: (callback: (error: grpc.ServiceError | null, value?: T) => void) => void): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    start((error) =>
      error ? resolve({ code: error.code, reason: refusalReasonOf(error.metadata), details: error.details }) : reject(new Error('the call was accepted')),
    );
  });
}

/** What an unauthenticated caller gets, whatever it asks and whichever id it names. */
const UNAUTHENTICATED = {
  code: grpc.status.UNAUTHENTICATED,
  reason: 'unauthenticated',
  details: `the call needs the credential of a current registration in the ${CREDENTIAL_METADATA_KEY} metadata entry: register first`,
};

/** A state at phase 0 step 1499 with fc1 zeroed: what a forger would have the next --resume start from. */
function forgedState(configHash: string): Buffer {
  return encodeCheckpointSnapshot({
    position: { phase: 'dense', phaseIndex: 0, step: 1499, epoch: 0, configHash, model: 'lenet300' },
    parameters: new Map([['fc1.kernel', { dtype: 'F32', shape: [2], data: new Float32Array(2) }]]),
    optimizers: new Map(),
  });
}

describe('coordinator authentication over gRPC', function () {
  this.timeout(120_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-auth-'));
  let serving: ServingCoordinator;
  let runDirectory: RunDirectory;
  let raw: CoordinatorClient;
  const workers = new Map<string, CoordinatorConnection>();
  const credentials = new Map<string, string>();

  const registration = (workerId: string, overrides: object = {}) => ({
    workerId,
    address: '127.0.0.1:1',
    dataAddress: '127.0.0.1:2',
    capabilities: { hostname: 'test' },
    joinToken: TOKEN,
    configHash: serving.coordinator.hash,
    protocolVersion: PROTOCOL_VERSION,
    generation: 0,
    ...overrides,
  });
  const worker = (id: string) => workers.get(id)!;
  /** Call metadata that presents `credential`. */
  const presenting = (credential: string) => {
    const metadata = new grpc.Metadata();
    metadata.set(CREDENTIAL_METADATA_KEY, credential);
    return metadata;
  };
  const deadline = (ms = 5000) => ({ deadline: Date.now() + ms });

  before(async () => {
    runDirectory = await RunDirectory.create(join(root, 'run'), config);
    serving = await serveCoordinator({
      config,
      runId: 'auth',
      joinToken: TOKEN,
      workers: 2,
      runDirectory,
      events: new InProcessEventBus().publisher('auth'),
      logger: createLogger({ name: 'test', level: 'silent' }),
      listen: '127.0.0.1:0',
      tls: undefined,
      maxMessageBytes: 16 * 1024 * 1024,
    });
    const address = `127.0.0.1:${serving.port}`;
    raw = new (loadCoordinatorProto().Coordinator)(address, grpc.credentials.createInsecure());
    for (const id of ['w0', 'w1']) {
      const connection = new CoordinatorConnection(address, grpc.credentials.createInsecure(), 16 * 1024 * 1024);
      workers.set(id, connection);
      credentials.set(id, (await connection.register(registration(id))).credential);
    }
    const [r0, r1] = await Promise.all([worker('w0').rendezvous('w0', 0, 'cpu'), worker('w1').rendezvous('w1', 0, 'cpu')]);
    assert.deepEqual([r0.generation, r0.rank, r1.rank], [1, 0, 1]);
  });
  after(async () => {
    raw?.close();
    for (const connection of workers.values()) connection.close();
    serving?.coordinator.fail('test over');
    await serving?.close();
  });

  it('answers Heartbeat for an unknown id and a registered one alike: no id oracle', async () => {
    const nobody = await refusalOf((cb) => raw.Heartbeat({ workerId: 'nobody', generation: 0 }, deadline(), cb));
    const w0 = await refusalOf((cb) => raw.Heartbeat({ workerId: 'w0', generation: 1 }, deadline(), cb));
    assert.deepEqual(nobody, UNAUTHENTICATED);
    assert.deepEqual(w0, UNAUTHENTICATED);
  });

  it('refuses a forged ReportFailure: the run goes on', async () => {
    const forged = { workerId: 'w0', generation: 1, reason: 'forged', willRejoin: false };
    assert.deepEqual(await refusalOf((cb) => raw.ReportFailure(forged, deadline(), cb)), UNAUTHENTICATED);
    assert.equal(serving.coordinator.lifecycle.status, 'running');
  });

  it('refuses FetchState as a registered worker, with a status that arrives (not a deadline)', async () => {
    const refusal = await new Promise<Refusal>((resolve, reject) => {
      const call = raw.FetchState({ workerId: 'w0', generation: 1, phaseIndex: 0 }, deadline());
      call.on('data', () => reject(new Error('state was served')));
      call.on('error', (error: grpc.ServiceError) => resolve({ code: error.code, reason: refusalReasonOf(error.metadata), details: error.details }));
      call.on('end', () => reject(new Error('the stream ended without a status')));
    });
    assert.deepEqual(refusal, UNAUTHENTICATED);
  });

  it('refuses UploadState of a forged state as a registered worker, and writes no checkpoint', async () => {
    const state = forgedState(serving.coordinator.hash);
    const refusal = await refusalOf((cb) => {
      const call = raw.UploadState(deadline(), cb);
      call.write({ workerId: 'w0', generation: 1, phaseIndex: 0, step: 1499, totalBytes: state.length, data: state });
      call.end();
    });
    assert.deepEqual(refusal, UNAUTHENTICATED);
    const empty = await refusalOf((cb) => raw.UploadState(deadline(), cb).end());
    assert.deepEqual(empty, UNAUTHENTICATED, 'a stream that names no worker');
    assert.equal(await runDirectory.checkpoints.latest(), undefined);
  });

  it('refuses Rendezvous, NextTask and the reports as a registered worker, also with another worker’s credential', async () => {
    const w1 = presenting(credentials.get('w1')!);
    for (const metadata of [new grpc.Metadata(), w1, presenting('not-a-credential')]) {
      const calls = [
        refusalOf((cb) => raw.Rendezvous({ workerId: 'w0', lastGeneration: 1, backend: 'cpu' }, metadata, deadline(), cb)),
        refusalOf((cb) => raw.NextTask({ workerId: 'w0', generation: 1, finishedTask: 0 }, metadata, deadline(), cb)),
        refusalOf((cb) => raw.ReportProgress({ workerId: 'w0', generation: 1, rank: 0, phaseIndex: 0, step: 4, loss: 9 }, metadata, deadline(), cb)),
        refusalOf((cb) =>
          raw.ReportEvaluation({ workerId: 'w0', generation: 1, rank: 0, phaseIndex: 0, step: 8, correct: 1, count: 1 }, metadata, deadline(), cb),
        ),
        refusalOf((cb) => raw.Heartbeat({ workerId: 'w0', generation: 1 }, metadata, deadline(), cb)),
      ];
      for (const refusal of await Promise.all(calls)) assert.deepEqual(refusal, UNAUTHENTICATED);
    }
    // The real w0 is still rank 0 of generation 1: nobody took its place at a rendezvous.
    assert.deepEqual(await worker('w0').heartbeat('w0', 1), { generation: 1, state: 'RUN_STATE_RUNNING', reason: '' });
  });

  it('checks the join token before anything else, and refuses a registration under a live id without its credential', async () => {
    const noToken = await refusalOf((cb) => raw.Register(registration('w2', { joinToken: 'wrong', protocolVersion: PROTOCOL_VERSION + 1 }), deadline(), cb));
    assert.deepEqual(noToken, { code: grpc.status.UNAUTHENTICATED, reason: 'unauthenticated', details: 'join token refused' });
    const takeover = await refusalOf((cb) => raw.Register(registration('w0'), deadline(), cb));
    assert.deepEqual([takeover.code, takeover.reason], [grpc.status.ALREADY_EXISTS, 'already-registered']);
    const withOthers = await refusalOf((cb) => raw.Register(registration('w0'), presenting(credentials.get('w1')!), deadline(), cb));
    assert.equal(withOthers.reason, 'already-registered');
  });

  it('sends FetchState’s refusals to a registered worker as statuses', async () => {
    const w0 = presenting(credentials.get('w0')!);
    const fetch = (generation: number, phaseIndex: number) =>
      new Promise<Refusal>((resolve, reject) => {
        const call = raw.FetchState({ workerId: 'w0', generation, phaseIndex }, w0, deadline());
        call.on('error', (error: grpc.ServiceError) => resolve({ code: error.code, reason: refusalReasonOf(error.metadata), details: error.details }));
        call.on('end', () => reject(new Error('the stream ended without a status')));
      });
    const stale = await fetch(0, 0);
    assert.deepEqual([stale.code, stale.reason], [grpc.status.FAILED_PRECONDITION, 'stale-generation']);
    const none = await fetch(1, 0);
    assert.deepEqual([none.code, none.reason, none.details], [grpc.status.NOT_FOUND, 'not-found', 'phase 0 does not start from a checkpoint']);
  });

  it('takes the run’s state only from rank 0, only where a task asked for it; the run then goes on and checkpoints', async () => {
    const state = forgedState(serving.coordinator.hash);
    const refused = (id: string, step: number) =>
      worker(id)
        .uploadState(id, 1, 0, step, state)
        .then(
          () => assert.fail('the upload was accepted'),
          (error: CoordinatorCallError) => error,
        );
    const rankOne = await refused('w1', 12);
    assert.deepEqual([rankOne.code, rankOne.reason], [grpc.status.PERMISSION_DENIED, 'not-permitted']);
    assert.match(rankOne.message, /worker w1 is rank 1 of generation 1: only rank 0/);
    const notAsked = await refused('w0', 1499);
    assert.deepEqual([notAsked.code, notAsked.reason], [grpc.status.PERMISSION_DENIED, 'not-permitted']);
    assert.match(notAsked.message, /phase 0 step 1499, but no task asked for it there; expected none/);

    // The run is unaffected: both workers take their tasks, and rank 0's upload where the plan asks is written.
    for (let finished = 0; finished < 2; finished++) {
      const [t0, t1] = await Promise.all([worker('w0').nextTask('w0', 1, finished), worker('w1').nextTask('w1', 1, finished)]);
      assert.deepEqual([t0.train?.phaseIndex, t0.train?.toStep, t1.train?.toStep], [0, finished === 0 ? 8 : 12, finished === 0 ? 8 : 12]);
      assert.deepEqual([t0.train?.uploadState, t1.train?.uploadState], [finished === 1, false]);
    }
    const atPhaseEnd = encodeCheckpointSnapshot({
      position: { phase: 'dense', phaseIndex: 0, step: 12, epoch: 0, configHash: serving.coordinator.hash, model: 'lenet300' },
      parameters: new Map([['fc1.kernel', { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]]),
      optimizers: new Map(),
    });
    await worker('w0').uploadState('w0', 1, 0, 12, atPhaseEnd);
    let latest = await runDirectory.checkpoints.latest();
    for (let tries = 0; tries < 400 && !latest; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      latest = await runDirectory.checkpoints.latest();
    }
    assert.deepEqual([latest?.checkpoint.position.phaseIndex, latest?.checkpoint.position.step], [0, 12]);
    assert.equal(serving.coordinator.lifecycle.status, 'running');
  });
});
