import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { RunStatus } from '../../cli/status.js';
import { auditSamples, readAuditLogs } from '../../engine/sample-audit.js';
import { largestRelativeDifference, newestCheckpoint } from '../helpers/checkpoints.js';
import { type CliOptions, type CliProcess, runCli, startCli } from '../helpers/cli.js';
import { type NatsServer, natsServerForTests } from '../helpers/nats-server.js';
import { TestNetwork } from '../helpers/netns.js';
import { RunEvents } from '../helpers/run-events.js';
import { skipBecause } from '../helpers/skip.js';
import { smallMnistRun } from '../helpers/small-mnist-run.js';
import { testRandom } from '../helpers/test-seed.js';

/**
 * Worker failure, end to end: a coordinator and three worker processes on loopback, one of them killed
 * with SIGKILL mid-run, a replacement started. SGD keeps the runs comparable across world sizes.
 */

const TOKEN = 'fault-tolerance-token-0123';
const CONFIG = smallMnistRun(7, 120, {
  data: { dataset: 'mnist', trainSubset: 900, testSubset: 200 },
  checkpoint: { every: 5, keep: 2 },
  distributed: { heartbeat: { intervalSeconds: 0.5, timeoutSeconds: 3 }, collective: { timeoutSeconds: 5 } },
});

/** A CLI process of this test: info logs, and the join token the coordinators expect. */
function start(args: string[], options: CliOptions = {}): CliProcess {
  return startCli(args, { ...options, env: { AUTOPRUNE_JOIN_TOKEN: TOKEN, ...options.env } });
}

/** The port a coordinator started with `--listen HOST:0` listens on, from its log. */
async function listeningPort(coordinator: CliProcess): Promise<number> {
  return (await coordinator.waitForLogLine('coordinator.listening')).port as number;
}

/** Every step's counted samples are exactly its planned global batch. */
function checkSamples(logs: string[]): void {
  const result = auditSamples(readAuditLogs(logs.filter((file) => existsSync(file))), {
    seed: CONFIG.seed,
    trainSamples: CONFIG.data.trainSubset,
    batchSize: CONFIG.batchSize,
    phases: CONFIG.phases,
  });
  assert.deepEqual(result, { lost: 0, repeated: 0, wrongSteps: [] });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe('worker failure, end to end', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-fault-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));
  let nats: NatsServer;

  before(async () => {
    nats = await natsServerForTests();
  });
  after(async () => {
    await nats?.stop();
  });

  /** A coordinator publishing on NATS, with its events followed from before it starts. */
  async function startCoordinator(args: string[], runId: string, options: CliOptions = {}): Promise<{ coordinator: CliProcess; events: RunEvents }> {
    const events = await RunEvents.follow(nats.url, runId);
    const coordinator = start(['coordinator', ...args, '--run-id', runId, '--nats', nats.url], options);
    events.publishedBy(coordinator);
    return { coordinator, events };
  }

  it('SIGKILL of a worker at a random step: the survivors go on from memory, a replacement joins, every sample counts exactly once, and the run meets the reference accuracy', async () => {
    // A random worker at a random step of the prune phase, replayable from the printed seed.
    const random = testRandom();
    const victim = `w${random.below(3)}`;
    const atStep = 15 + 5 * random.below(10);
    console.log(`      killing ${victim} after prune step ${atStep}`);
    const reference = start(['run', config, '--workers', '3', '--out', join(root, 'reference')]);
    const { coordinator, events } = await startCoordinator([config, '--workers', '3', '--listen', '127.0.0.1:0', '--out', join(root, 'killed')], 'killed');
    const port = await listeningPort(coordinator);
    const worker = (id: string) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', join(root, `${id}.samples.jsonl`)]);
    const workers = new Map(['w0', 'w1', 'w2'].map((id) => [id, worker(id)]));
    try {
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune' && d.step === atStep);
      // Between checkpoints: the survivors' memory, not the checkpoint, is what the run goes on from.
      await new Promise((resolve) => setTimeout(resolve, 600));
      workers.get(victim)!.kill();
      const killedAt = Date.now();
      const recovery = (await events.waitFor('recovery.completed')).data;
      assert.ok(Date.now() - killedAt < 15_000, 'recovered within seconds');
      assert.equal(recovery.workers, 2);
      assert.deepEqual(
        events.all('worker.left').map((e) => e.data.workerId),
        [victim],
      );
      assert.ok(
        recovery.from.phaseIndex === 1 && recovery.from.step > atStep,
        `went on from ${JSON.stringify(recovery.from)}, past the checkpoint at ${atStep}`,
      );
      assert.ok(recovery.stepsRedone <= 2, `${recovery.stepsRedone} steps redone`);

      // A replacement joins the running run; the ring grows back to three.
      workers.set('w3', worker('w3'));
      await events.waitFor('recovery.completed', (d) => d.workers === 3);

      const result = await coordinator.waitForExit();
      assert.equal(result.status, 0, coordinator.tail());
      await events.waitFor('run.finished');
      const detected = events.all('failure.detected');
      assert.equal(detected.length, 1);
      assert.equal(detected[0]!.data.workerId, victim);
      assert.ok(detected[0]!.data.detectSeconds <= 5, `detected after ${detected[0]!.data.detectSeconds} s`);
      for (const { data } of events.all('recovery.completed')) assert.ok(data.recoverSeconds < 10, `recovered in ${data.recoverSeconds} s`);

      checkSamples(['w0', 'w1', 'w2', 'w3'].map((id) => join(root, `${id}.samples.jsonl`)));

      // The world size changed twice, so the sums were taken in other orders; through the step gate such
      // rounding differences can open or close a gate at the margin, so the bar is the reference's accuracy.
      const referenceResult = await reference.waitForExit();
      assert.equal(referenceResult.status, 0, reference.tail());
      const accuracy = (run: string) =>
        (JSON.parse(readFileSync(join(root, run, 'report.json'), 'utf8')) as { phases: Array<{ testAccuracy: number }> }).phases[1]!.testAccuracy;
      assert.ok(Math.abs(accuracy('killed') - accuracy('reference')) <= 0.02, `test accuracy ${accuracy('killed')} against ${accuracy('reference')}`);
      const difference = largestRelativeDifference(await newestCheckpoint(join(root, 'killed')), await newestCheckpoint(join(root, 'reference')));
      assert.ok(difference < 1e-2, `final state differs by ${difference}`);
    } finally {
      for (const p of [...workers.values(), coordinator, reference]) p.kill();
      await events.close();
    }
  });

  it('SIGKILL of the coordinator: restarted with --resume on its address, the workers register again and the run completes as if uninterrupted', async () => {
    const port = await freePort();
    const runDir = join(root, 'coordinator-killed');
    const args = ['--workers', '2', '--listen', `127.0.0.1:${port}`];
    const reference = start(['run', config, '--workers', '2', '--out', join(root, 'reference-2')]);
    const { coordinator: first, events } = await startCoordinator([config, '--out', runDir, ...args], 'coordinator-killed');
    await listeningPort(first);
    const audit = ['c0', 'c1'].map((id) => join(root, `${id}.samples.jsonl`));
    const workers = ['c0', 'c1'].map((id, i) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', audit[i]!]));
    let second: CliProcess | undefined;
    try {
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune' && d.step === 30);
      first.kill();
      await first.waitForExit();
      second = start(['coordinator', '--resume', runDir, ...args, '--run-id', 'coordinator-killed', '--nats', nats.url]);
      events.publishedBy(second);
      const result = await second.waitForExit();
      assert.equal(result.status, 0, second.tail());
      for (const worker of workers) assert.equal((await worker.waitForExit()).status, 0, 'the workers outlived their coordinator');
      assert.ok(
        workers.every((w) => w.logLines('coordinator.lost').length > 0),
        'both workers noticed the coordinator go',
      );
      // The resumed coordinator starts the run again from the newest checkpoint, and numbers its
      // generations above its predecessor's, fencing out anything older.
      const resumed = await events.waitFor('run.started', (d) => d.resumedFrom !== undefined);
      assert.ok(resumed.data.resumedFrom!.phaseIndex === 1 && resumed.data.resumedFrom!.step >= 30, JSON.stringify(resumed.data));
      assert.ok(
        workers[0]!.logLines('worker.rendezvous').some((line) => line.generation === 2),
        'a rendezvous in generation 2',
      );
      checkSamples(audit);
      const referenceResult = await reference.waitForExit();
      assert.equal(referenceResult.status, 0, reference.tail());
      assert.equal(
        largestRelativeDifference(await newestCheckpoint(runDir), await newestCheckpoint(join(root, 'reference-2'))),
        0,
        'same world size: bit-identical',
      );
    } finally {
      for (const p of [...workers, first, reference, ...(second ? [second] : [])]) p.kill();
      await events.close();
    }
  });

  it('a host whose network link is cut (network namespaces): detected by its silence, the run goes on without it', async function () {
    const unavailable = TestNetwork.unavailable();
    if (unavailable) skipBecause(this, `network namespaces need root and ip netns (${unavailable})`);
    const network = new TestNetwork(`apn${process.pid % 1000}`, `10.${77 + (process.pid % 100)}.0`);
    const processes: CliProcess[] = [];
    let events: RunEvents | undefined;
    try {
      network.setUp();
      const hosts = [network.addHost(1), network.addHost(2)];
      const port = await freePort();
      const started = await startCoordinator([config, '--workers', '3', '--listen', `${network.gateway}:${port}`, '--out', join(root, 'netns')], 'netns');
      const coordinator = started.coordinator;
      events = started.events;
      processes.push(coordinator);
      await listeningPort(coordinator);
      // Two workers on their own hosts, one beside the coordinator.
      for (const [i, host] of hosts.entries()) {
        const args = ['worker', '--coordinator', `${network.gateway}:${port}`, '--id', `host${i + 1}`, '--advertise', host.address];
        processes.push(start(args, { wrapper: ['ip', 'netns', 'exec', host.namespace] }));
      }
      processes.push(start(['worker', '--coordinator', `${network.gateway}:${port}`, '--id', 'local', '--advertise', network.gateway]));
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune' && d.step === 20);
      hosts[0]!.cut();
      const result = await coordinator.waitForExit();
      assert.equal(result.status, 0, coordinator.tail());
      const detected = events.all('failure.detected');
      assert.equal(detected[0]!.data.workerId, 'host1');
      assert.match(detected[0]!.data.how, /no heartbeat/);
      assert.equal((await events.waitFor('recovery.completed')).data.workers, 2);
    } finally {
      for (const p of processes) p.kill();
      await events?.close();
      network.tearDown();
    }
  });

  it('a run that falls below minWorkers waits for replacements, then fails with the reason', async () => {
    const strict = join(root, 'strict.yaml');
    writeFileSync(strict, toYaml({ ...CONFIG, distributed: { ...CONFIG.distributed, minWorkers: 2, rejoinWaitSeconds: 2 } }));
    const { coordinator, events } = await startCoordinator([strict, '--workers', '2', '--listen', '127.0.0.1:0', '--out', join(root, 'strict')], 'strict');
    const port = await listeningPort(coordinator);
    const workers = ['s0', 's1'].map((id) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id]));
    try {
      await events.waitFor('checkpoint.saved', (d) => d.phase === 'prune');
      workers[1]!.kill();
      const result = await coordinator.waitForExit();
      assert.equal(result.status, 1);
      assert.match(result.stderr, /run failed: .*s1.*only 1 of the 2 workers needed came back within 2 s/);
      const survivor = await workers[0]!.waitForExit();
      assert.notEqual(survivor.status, 0);
      // `status` of the failed run: the reason, the failure, where it stood.
      const status = await runCli(['status', join(root, 'strict'), '--json']);
      assert.equal(status.status, 0, status.stderr);
      const failed = JSON.parse(status.stdout) as RunStatus;
      assert.equal(failed.state, 'failed');
      assert.match(failed.failedReason!, /only 1 of the 2 workers needed came back/);
      assert.ok(failed.failures >= 1, `${failed.failures} failures`);
      assert.equal(failed.phase?.name, 'prune');
      assert.ok(failed.lastCheckpoint !== null && failed.lastCheckpoint.phaseIndex === 1);
    } finally {
      for (const p of [...workers, coordinator]) p.kill();
      await events.close();
    }
  });
});
