import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { InProcessCoordinatorApi } from '../../coordinator/in-process-api.js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { type ServingCoordinator, serveCoordinator } from '../../coordinator/serve.js';
import { type RunConfig, validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import { createLogger } from '../../shared/logging.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import { WorkerAgent } from '../../worker/agent.js';
import { CoordinatorConnection } from '../../worker/coordinator-client.js';
import { threadHeartbeats } from '../../worker/heartbeat-thread.js';
import { HeartbeatWatch } from '../../worker/heartbeat-watch.js';
import type { Beat } from '../../worker/heartbeats.js';
import { soloTransports } from '../../worker/transports.js';

/**
 * Heartbeats from a thread of their own, against a real coordinator over gRPC on loopback: the beats and
 * their replies, a refused beat, a crash reported as one, a thread that never keeps a process alive, and
 * an agent that fails (rather than waits forever) when its heartbeat thread dies.
 */

const TOKEN = 'heartbeat-test-token-0123456789';
const silent = createLogger({ name: 'test', level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'autoprune-heartbeats-'));
const config: RunConfig = validateConfig(
  {
    seed: 1,
    backend: 'cpu',
    model: { name: 'lenet300' },
    data: { dataset: 'mnist', trainSubset: 120, testSubset: 60 },
    batchSize: 60,
    phases: [{ phase: 'dense', steps: 2, weights: { lr: 1e-3 } }],
    distributed: { heartbeat: { intervalSeconds: 0.05, timeoutSeconds: 1 } },
  },
  'test config',
);
/** TLS material that is no PEM at all: the thread's gRPC credentials throw as it starts. */
const brokenTls = { cert: Buffer.from('not a certificate'), key: Buffer.from('not a key'), ca: undefined };

async function coordinatorFor(runId: string, workers: number): Promise<Coordinator> {
  return Coordinator.create({
    config,
    runId,
    joinToken: TOKEN,
    workers,
    runDirectory: await RunDirectory.create(join(root, runId), config, silent),
    events: new InProcessEventBus().publisher(runId),
    logger: silent,
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('worker heartbeats from their own thread', function () {
  this.timeout(60_000);
  let serving: ServingCoordinator;
  let address: string;

  before(async () => {
    serving = await serveCoordinator({
      config,
      runId: 'beats',
      joinToken: TOKEN,
      workers: 2,
      runDirectory: await RunDirectory.create(join(root, 'beats'), config, silent),
      events: new InProcessEventBus().publisher('beats'),
      logger: silent,
      listen: '127.0.0.1:0',
      tls: undefined,
      maxMessageBytes: 1 << 20,
    });
    address = `127.0.0.1:${serving.port}`;
  });
  after(async () => {
    serving.coordinator.fail('test over');
    await serving.close();
  });

  it('beats on its own connection once told the registration, and posts each reply back', async () => {
    const connection = new CoordinatorConnection(address, grpc.credentials.createInsecure(), 1 << 20);
    const registration = await connection.register({
      workerId: 'w0',
      address: '127.0.0.1:1',
      dataAddress: '127.0.0.1:2',
      capabilities: { hostname: 'test' },
      joinToken: TOKEN,
      configHash: '',
      protocolVersion: PROTOCOL_VERSION,
      generation: 0,
    });
    connection.close();
    const beats: Beat[] = [];
    const source = threadHeartbeats({ address, tls: undefined, maxMessageBytes: 1 << 20, workerId: 'w0' })((beat) => beats.push(beat));
    try {
      source.beatFor({ credential: registration.credential, intervalMs: registration.heartbeatIntervalMs });
      await until(() => beats.length >= 3, 'three replies');
      assert.deepEqual(beats[0], { kind: 'reply', reply: { generation: 0, state: 'RUN_STATE_PENDING', reason: '' } });
    } finally {
      await source.close();
    }
    const heard = beats.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(beats.length, heard, 'nothing is reported after close');
  });

  it('reports a refused beat with the refusal reason (a worker the coordinator does not know: no valid credential)', async () => {
    const beats: Beat[] = [];
    const source = threadHeartbeats({ address, tls: undefined, maxMessageBytes: 1 << 20, workerId: 'ghost' })((beat) => beats.push(beat));
    try {
      source.beatFor({ credential: '', intervalMs: 50 });
      await until(() => beats.length > 0, 'a beat');
      assert.equal(beats[0]!.kind, 'failed');
      assert.equal(beats[0]!.kind === 'failed' && beats[0]!.reason, 'unauthenticated');
    } finally {
      await source.close();
    }
  });

  it('reports a thread that dies as one crash, with its cause', async () => {
    const beats: Beat[] = [];
    const source = threadHeartbeats({ address, tls: brokenTls, maxMessageBytes: 1 << 20, workerId: 'w0' })((beat) => beats.push(beat));
    try {
      await until(() => beats.length > 0, 'the crash');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(beats.length, 1, 'reported once');
      assert.equal(beats[0]!.kind, 'crashed');
      assert.match(beats[0]!.kind === 'crashed' ? beats[0]!.message : '', /^the heartbeat thread crashed: .*PEM/);
    } finally {
      await source.close();
    }
  });

  it('turns the crash into a failure the agent races against', async () => {
    const watch = new HeartbeatWatch(threadHeartbeats({ address, tls: brokenTls, maxMessageBytes: 1 << 20, workerId: 'w0' }), silent, () => {});
    watch.start();
    try {
      await assert.rejects(watch.crashed, /the heartbeat thread crashed/);
      assert.match(watch.failure?.message ?? '', /the heartbeat thread crashed/);
    } finally {
      await watch.close();
    }
  });

  it('never keeps a process alive: a process that forgets to close its heartbeats still exits', async () => {
    const script = join(root, 'forgets-to-close.mjs');
    writeFileSync(
      script,
      `import { threadHeartbeats } from ${JSON.stringify(fileURLToPath(new URL('../../worker/heartbeat-thread.js', import.meta.url)))};
      const source = threadHeartbeats({ address: '127.0.0.1:1', tls: undefined, maxMessageBytes: 1 << 20, workerId: 'w0' })((beat) => console.log(beat.kind));
      source.beatFor({ credential: '', intervalMs: 50 });
      setTimeout(() => console.log('main thread done'), 1000);`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const status = await exited;
    clearTimeout(timer);
    assert.equal(status, 0, 'exited by itself, not killed after 30 s');
    // The thread was beating (against nothing) when the main thread ran out of work.
    assert.match(out, /failed\n[\s\S]*main thread done/);
    assert.doesNotMatch(out, /crashed/);
  });

  it('an agent waiting at the rendezvous fails, naming the crash, when its heartbeat thread dies', async () => {
    // Two workers expected and only this one there: without the crash it would wait forever.
    const coordinator = await coordinatorFor('crash', 2);
    coordinator.start();
    const api = new InProcessCoordinatorApi(coordinator);
    try {
      const agent = new WorkerAgent({
        workerId: 'w0',
        coordinator: api,
        transports: soloTransports,
        heartbeats: threadHeartbeats({ address: '127.0.0.1:1', tls: brokenTls, maxMessageBytes: 1 << 20, workerId: 'w0' }),
        joinToken: TOKEN,
        config: undefined,
        connectTimeoutMs: 0,
        sampleLog: undefined,
        logger: silent,
      });
      const outcome = await agent.run();
      assert.equal(outcome.status, 'failed');
      assert.match(outcome.status === 'failed' ? outcome.reason : '', /^the heartbeat thread crashed: /);
      assert.equal(agent.lifecycle.state, 'failed');
      // It told the run why.
      assert.equal(coordinator.lifecycle.status, 'failed');
      assert.match(coordinator.lifecycle.reason ?? '', /worker w0: the heartbeat thread crashed/);
    } finally {
      api.close();
      coordinator.stop();
    }
  });
});
