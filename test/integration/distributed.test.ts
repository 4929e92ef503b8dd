import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { stringify as toYaml } from 'yaml';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { type ServingCoordinator, serveCoordinator } from '../../coordinator/serve.js';
import { CheckpointStore } from '../../shared/checkpoint-store.js';
import { validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import type { RunEvent } from '../../shared/events/types.js';
import { createLogger } from '../../shared/logging.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import type { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import type { NamedTensor } from '../../shared/safetensors.js';
import { CoordinatorConnection } from '../../worker/coordinator-client.js';
import { tensorRelativeDifference } from '../helpers/checkpoints.js';
import { runCli, startCli } from '../helpers/cli.js';
import { type NatsServer, natsServerForTests } from '../helpers/nats-server.js';
import { RunEvents } from '../helpers/run-events.js';
import { issueTestCertificates } from '../helpers/tls.js';

const TOKEN = 'test-join-token-0123456789';

/** A short LeNet-300-100 run on real MNIST, without dropout so that replicas see the same network noise. */
function smallRun(overrides: Record<string, unknown> = {}) {
  return {
    seed: 3,
    backend: 'wasm',
    model: { name: 'lenet300', dropout: 0 },
    data: { dataset: 'mnist', trainSubset: 1200, testSubset: 300 },
    batchSize: 64,
    prune: { auxGradient: 'magnitude', mu: { conv: 0.2, fc: 0.4 } },
    phases: [
      { phase: 'dense', steps: 12, weights: { lr: 1e-3 } },
      { phase: 'prune', steps: 12, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
    ],
    evaluation: { every: 8, batchSize: 300 },
    logging: { every: 4 },
    distributed: { checksumEvery: 4 },
    ...overrides,
  };
}

function writeConfig(dir: string, name: string, config: object): string {
  const path = join(dir, name);
  writeFileSync(path, toYaml(config));
  return path;
}

describe('distributed runs on loopback', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-dist-'));
  let nats: NatsServer;

  before(async () => {
    nats = await natsServerForTests();
  });
  after(async () => {
    await nats?.stop();
  });

  it('2 workers give the weights and masks of 1 worker with the same global batch, and publish ordered events on NATS', async () => {
    // SGD rather than Adam: Adam divides by √v, which turns the rounding differences of a differently
    // ordered sum into full-size steps wherever a gradient is near zero; SGD shows the exchange as it is.
    const sgd = { type: 'sgd', lr: 0.05 };
    const configPath = writeConfig(
      root,
      'small.yaml',
      smallRun({
        phases: [
          { phase: 'dense', steps: 12, weights: sgd },
          { phase: 'prune', steps: 12, weights: sgd, aux: { type: 'sgd', lr: 1 } },
        ],
      }),
    );
    const events = await RunEvents.follow(nats.url, 'two-workers');
    try {
      const two = startCli(['run', configPath, '--workers', '2', '--out', join(root, 'two'), '--run-id', 'two-workers', '--nats', nats.url]);
      events.publishedBy(two);
      const one = await runCli(['run', configPath, '--workers', '1', '--out', join(root, 'one'), '--run-id', 'one-worker']);
      const twoDone = await two.waitForExit();
      assert.equal(twoDone.status, 0, `2-worker run failed:\n${twoDone.stderr}`);
      assert.equal(one.status, 0, `1-worker run failed:\n${one.stderr}`);
      assert.match(twoDone.stdout, /compression/);
      await events.waitFor('run.finished');
    } finally {
      await events.close();
    }
    const received = events.received;

    const newest = async (run: string) => (await new CheckpointStore(join(root, run, 'checkpoints'), 1).latest())!.checkpoint;
    const a = await newest('one');
    const b = await newest('two');
    assert.deepEqual([...b.parameters.keys()], [...a.parameters.keys()]);
    for (const [name, tensor] of a.parameters) {
      const other = b.parameters.get(name)!;
      const difference = tensorRelativeDifference(tensor, other);
      assert.ok(difference <= 1e-5, `${name} differs by ${difference} (relative)`);
      if (name.endsWith('.mask')) {
        const gates = (t: NamedTensor) => Array.from(t.data as Float32Array, (m) => m > 0);
        assert.deepEqual(gates(other), gates(tensor), `${name}: the same gates are open`);
      }
    }

    assert.deepEqual(
      received.map((e) => e.seq),
      received.map((_, i) => i + 1),
      'events in publishing order, none missing',
    );
    const kinds = received.map((e) => e.event);
    assert.deepEqual(kinds.slice(0, 3), ['worker.joined', 'worker.joined', 'run.started']);
    assert.equal(kinds[kinds.length - 1], 'run.finished');
    const steps = received.filter((e): e is RunEvent<'step'> => e.event === 'step');
    assert.deepEqual(
      steps.map((e) => `${e.data.phaseIndex}:${e.data.step}`),
      ['0:4', '0:8', '0:12', '1:4', '1:8', '1:12'],
    );
    assert.ok(steps.every((e) => e.data.workers === 2 && e.data.imagesPerSecond > 0));
    assert.deepEqual(
      received.filter((e) => e.event === 'eval').map((e) => (e as RunEvent<'eval'>).data.step),
      [8, 12, 8, 12],
    );
    assert.equal(received.filter((e) => e.event === 'checkpoint.saved').length, 2);
  });

  it('fails the step within the collective timeout, naming the worker that stopped answering', async () => {
    const configPath = writeConfig(
      root,
      'stall.yaml',
      smallRun({
        phases: [{ phase: 'dense', steps: 100000, weights: { lr: 1e-3 } }],
        evaluation: { every: 0, batchSize: 300 },
        logging: { every: 5 },
        // The collective fails first and says why; the frozen worker's heartbeats stop later, and with
        // fewer than minWorkers left the run gives up after rejoinWaitSeconds, keeping the first reason.
        distributed: { collective: { timeoutSeconds: 1 }, heartbeat: { intervalSeconds: 1, timeoutSeconds: 4 }, minWorkers: 2, rejoinWaitSeconds: 1 },
      }),
    );
    const env = { AUTOPRUNE_JOIN_TOKEN: TOKEN };
    const events = await RunEvents.follow(nats.url, 'stall');
    const coordinator = startCli(
      ['coordinator', configPath, '--workers', '2', '--listen', '127.0.0.1:0', '--out', join(root, 'stall'), '--run-id', 'stall', '--nats', nats.url],
      { env },
    );
    events.publishedBy(coordinator);
    const port = (await coordinator.waitForLogLine('coordinator.listening')).port as number;
    const workers = ['steady', 'stalled'].map((id) => startCli(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id], { env }));
    try {
      // Once the generation has formed and trained a few steps, freeze one worker.
      await events.waitFor('step');
      workers[1]!.kill('SIGSTOP');
      const stoppedAt = Date.now();
      const result = await coordinator.waitForExit();
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, /run failed: worker steady: .*stalled/);
      assert.match(result.stderr, /sent nothing for \d+ ms/);
      assert.ok(Date.now() - stoppedAt < 30_000, 'failed within seconds');
      const steady = await workers[0]!.waitForExit();
      assert.notEqual(steady.status, 0);
    } finally {
      for (const p of [...workers, coordinator]) p.kill();
      await events.close();
    }
  });

  it('runs with mutual TLS between the coordinator and the workers and between the workers', async () => {
    const files = issueTestCertificates(root, 'cluster');
    const configPath = writeConfig(
      root,
      'tls.yaml',
      smallRun({ phases: [{ phase: 'dense', steps: 4, weights: { lr: 1e-3 } }], evaluation: { every: 0, batchSize: 300 } }),
    );
    const tls = ['--tls-cert', files.cert, '--tls-key', files.key, '--tls-ca', files.ca];
    const result = await runCli(['run', configPath, '--workers', '2', '--out', join(root, 'tls'), ...tls]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /dense +4 steps/);
  });

  it('fails the run with the reason a worker gives when it cannot start (bad data: exit 2)', async () => {
    const configPath = writeConfig(root, 'bad-data.yaml', smallRun({ data: { dataset: 'mnist', dir: join(root, 'no-such-dir') } }));
    const result = await runCli(['run', configPath, '--workers', '2', '--out', join(root, 'bad-data')]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /autoprune run: bad input: worker worker-\d: .*no-such-dir: data directory not found/);
  });

  describe('coordinator admission', () => {
    let serving: ServingCoordinator;
    let address: string;
    const config = validateConfig(smallRun(), 'test config');

    before(async () => {
      serving = await serveCoordinator({
        config,
        runId: 'admission',
        joinToken: TOKEN,
        workers: 1,
        runDirectory: await RunDirectory.create(join(root, 'admission'), config),
        events: new InProcessEventBus().publisher('admission'),
        logger: createLogger({ name: 'test', level: 'silent' }),
        listen: '127.0.0.1:0',
        tls: undefined,
        maxMessageBytes: 64 * 1024,
      });
      address = `127.0.0.1:${serving.port}`;
    });
    after(async () => {
      serving.coordinator.fail('test over');
      await serving.close();
    });

    const registration = (overrides: object = {}) => ({
      workerId: 'w0',
      address: '127.0.0.1:1',
      dataAddress: '127.0.0.1:2',
      capabilities: { hostname: 'test' },
      joinToken: TOKEN,
      configHash: serving.coordinator.hash,
      protocolVersion: PROTOCOL_VERSION,
      generation: 0,
      ...overrides,
    });

    async function refusal(overrides: object): Promise<CoordinatorCallError> {
      const connection = new CoordinatorConnection(address, grpc.credentials.createInsecure(), 16 * 1024 * 1024);
      try {
        await connection.register(registration(overrides));
      } catch (error) {
        return error as CoordinatorCallError;
      } finally {
        connection.close();
      }
      assert.fail('registration was accepted');
    }

    it('refuses a wrong join token', async () => {
      const error = await refusal({ joinToken: 'not-the-token' });
      assert.equal(error.code, grpc.status.UNAUTHENTICATED);
      assert.match(error.message, /join token refused/);
    });

    it('refuses a stale generation', async () => {
      const error = await refusal({ generation: 7 });
      assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
      assert.match(error.message, /stale generation 7/);
    });

    it('refuses a different config hash and another protocol version', async () => {
      const hash = await refusal({ configHash: 'f'.repeat(64) });
      assert.equal(hash.code, grpc.status.FAILED_PRECONDITION);
      assert.match(hash.message, /config hash ffffffffffff… differs/);
      const version = await refusal({ protocolVersion: PROTOCOL_VERSION + 1 });
      assert.match(version.message, /protocol version/);
    });

    it('refuses an oversized message', async () => {
      const error = await refusal({ address: `127.0.0.1:1${'0'.repeat(100 * 1024)}` });
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    });

    it('refuses calls from a worker that did not register', async () => {
      const connection = new CoordinatorConnection(address, grpc.credentials.createInsecure(), 1 << 20);
      try {
        await assert.rejects(
          connection.nextTask('ghost', 1, 0),
          (error: CoordinatorCallError) => error.code === grpc.status.UNAUTHENTICATED && error.reason === 'unauthenticated',
        );
      } finally {
        connection.close();
      }
    });

    it('serves grpc.health.v1.Health', async () => {
      const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
      const health = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
      const client = new health.grpc.health.v1.Health(address, grpc.credentials.createInsecure()) as grpc.Client & {
        Check(request: { service: string }, callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void): void;
      };
      try {
        const reply = await new Promise<{ status: string }>((resolve, reject) =>
          client.Check({ service: 'autoprune.v1.Coordinator' }, (error, r) => (error ? reject(error) : resolve(r!))),
        );
        assert.equal(reply.status, 'SERVING');
      } finally {
        client.close();
      }
    });
  });
});
