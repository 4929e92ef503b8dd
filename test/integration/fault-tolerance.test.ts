import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { auditSamples, readAuditLogs } from '../../engine/sample-audit.js';
import { largestRelativeDifference, newestCheckpoint } from '../helpers/checkpoints.js';
import { TestNetwork } from '../helpers/netns.js';

/**
 * Worker failure, end to end: a coordinator and three worker processes on loopback, one of them killed
 * with SIGKILL mid-run, a replacement started. SGD keeps the runs comparable across world sizes.
 */

const CLI = join('dist', 'cli', 'main.js');
const TOKEN = 'fault-tolerance-token-0123';
const sgd = { type: 'sgd', lr: 0.05 };
const CONFIG = {
  seed: 7,
  backend: 'wasm',
  model: { name: 'lenet300', dropout: 0 },
  data: { dataset: 'mnist', trainSubset: 900, testSubset: 200 },
  batchSize: 60,
  prune: { auxGradient: 'magnitude', mu: { conv: 0.2, fc: 0.4 } },
  phases: [
    { phase: 'dense', steps: 10, weights: sgd },
    { phase: 'prune', steps: 120, weights: sgd, aux: { type: 'sgd', lr: 1 } },
  ],
  evaluation: { every: 0, batchSize: 200 },
  logging: { every: 5 },
  checkpoint: { every: 5, keep: 2 },
  distributed: { heartbeat: { intervalSeconds: 0.5, timeoutSeconds: 3 }, collective: { timeoutSeconds: 5 } },
};

interface Process {
  readonly child: ChildProcess;
  readonly done: Promise<{ status: number | null; stderr: string }>;
  output(): string;
}

function start(args: string[]): Process {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', AUTOPRUNE_JOIN_TOKEN: TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout!.resume();
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<{ status: number | null; stderr: string }>((resolve) => child.on('exit', (status) => resolve({ status, stderr })));
  return { child, done, output: () => stderr };
}

async function waitFor(process: Process, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(process.output());
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} in:\n${process.output().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

/** Lines of the coordinator's JSON log with the given event. */
function events(log: string, event: string): Array<Record<string, unknown>> {
  return log
    .split('\n')
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('worker failure, end to end', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-fault-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));

  it('SIGKILL of a worker at a random step: the survivors go on from memory, a replacement joins, every sample counts exactly once, and the run meets the reference accuracy', async () => {
    const reference = start(['run', config, '--workers', '3', '--out', join(root, 'reference')]);
    const coordinator = start(['coordinator', config, '--workers', '3', '--listen', '127.0.0.1:0', '--out', join(root, 'killed'), '--run-id', 'killed']);
    const port = (await waitFor(coordinator, /"port":(\d+)/))[1]!;
    const worker = (id: string) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', join(root, `${id}.samples.jsonl`)]);
    const workers = ['w0', 'w1', 'w2'].map(worker);
    const others: Process[] = [];
    try {
      // A random worker at a random step of the prune phase (the choice is printed, to replay a failure).
      const victim = Math.floor(Math.random() * 3);
      const atStep = 15 + 5 * Math.floor(Math.random() * 10);
      console.log(`      killing w${victim} after prune step ${atStep}`);
      await waitFor(coordinator, new RegExp(`"event":"checkpoint.saved","phase":"prune","step":${atStep}\\b`));
      // Between checkpoints: the survivors' memory, not the checkpoint, is what the run goes on from.
      await new Promise((resolve) => setTimeout(resolve, 600));
      workers[victim]!.child.kill('SIGKILL');
      const killedAt = Date.now();
      const recovered = (await waitFor(coordinator, /"event":"recovery.completed"[^\n]*\n/))[0];
      assert.ok(Date.now() - killedAt < 15_000, 'recovered within seconds');
      assert.match(recovered, /"workers":\["w\d","w\d"\]/);
      const recovery = events(coordinator.output(), 'recovery.completed')[0] as unknown as { stepsRedone: number; from: { phaseIndex: number; step: number } };
      assert.ok(
        recovery.from.phaseIndex === 1 && recovery.from.step > atStep,
        `went on from ${JSON.stringify(recovery.from)}, past the checkpoint at ${atStep}`,
      );
      assert.ok(recovery.stepsRedone <= 2, `${recovery.stepsRedone} steps redone`);

      // A replacement joins the running run; the ring grows back to three.
      others.push(worker('w3'));
      await waitFor(coordinator, /"event":"recovery.completed"[^\n]*"workers":\[("w\d",?){3}\]/);

      const result = await coordinator.done;
      assert.equal(result.status, 0, result.stderr.slice(-3000));
      const detected = events(result.stderr, 'failure.detected');
      assert.equal(detected.length, 1);
      assert.equal(detected[0]!.workerId, `w${victim}`);
      assert.ok((detected[0]!.detectMs as number) <= 5000, `detected after ${detected[0]!.detectMs} ms`);
      for (const recovery of events(result.stderr, 'recovery.completed')) {
        assert.ok((recovery.recoverMs as number) < 10_000, `recovered in ${recovery.recoverMs} ms`);
      }

      checkSamples(['w0', 'w1', 'w2', 'w3'].map((id) => join(root, `${id}.samples.jsonl`)));

      // The world size changed twice, so the sums were taken in other orders; through the step gate such
      // rounding differences can open or close a gate at the margin, so the bar is the reference's accuracy.
      const referenceResult = await reference.done;
      assert.equal(referenceResult.status, 0, referenceResult.stderr.slice(-3000));
      const accuracy = (run: string) =>
        (JSON.parse(readFileSync(join(root, run, 'report.json'), 'utf8')) as { phases: Array<{ testAccuracy: number }> }).phases[1]!.testAccuracy;
      assert.ok(Math.abs(accuracy('killed') - accuracy('reference')) <= 0.02, `test accuracy ${accuracy('killed')} against ${accuracy('reference')}`);
      const difference = largestRelativeDifference(await newestCheckpoint(join(root, 'killed')), await newestCheckpoint(join(root, 'reference')));
      assert.ok(difference < 1e-2, `final state differs by ${difference}`);
    } finally {
      for (const p of [...workers, ...others, coordinator, reference]) p.child.kill('SIGKILL');
    }
  });

  it('SIGKILL of the coordinator: restarted with --resume on its address, the workers register again and the run completes as if uninterrupted', async () => {
    const port = await freePort();
    const runDir = join(root, 'coordinator-killed');
    const args = ['--workers', '2', '--listen', `127.0.0.1:${port}`, '--run-id', 'coordinator-killed'];
    const reference = start(['run', config, '--workers', '2', '--out', join(root, 'reference-2')]);
    const first = start(['coordinator', config, '--out', runDir, ...args]);
    await waitFor(first, /"port":\d+/);
    const audit = ['c0', 'c1'].map((id) => join(root, `${id}.samples.jsonl`));
    const workers = ['c0', 'c1'].map((id, i) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', audit[i]!]));
    let second: Process | undefined;
    try {
      await waitFor(first, /"event":"checkpoint.saved","phase":"prune","step":30\b/);
      first.child.kill('SIGKILL');
      await first.done;
      second = start(['coordinator', '--resume', runDir, ...args]);
      const result = await second.done;
      assert.equal(result.status, 0, result.stderr.slice(-3000));
      for (const worker of workers) assert.equal((await worker.done).status, 0, 'the workers outlived their coordinator');
      assert.ok(
        workers.every((w) => /"event":"coordinator.lost"/.test(w.output())),
        'both workers noticed the coordinator go',
      );
      // The resumed coordinator numbers its generations above its predecessor's, fencing out anything older.
      assert.match(result.stderr, /"event":"run.started"/);
      assert.match(workers[0]!.output(), /"event":"worker.rendezvous","generation":2/);
      checkSamples(audit);
      const referenceResult = await reference.done;
      assert.equal(referenceResult.status, 0, referenceResult.stderr.slice(-3000));
      assert.equal(
        largestRelativeDifference(await newestCheckpoint(runDir), await newestCheckpoint(join(root, 'reference-2'))),
        0,
        'same world size: bit-identical',
      );
    } finally {
      for (const p of [...workers, first, reference, ...(second ? [second] : [])]) p.child.kill('SIGKILL');
    }
  });

  it('a host whose network link is cut (network namespaces): detected by its silence, the run goes on without it', async function () {
    const unavailable = TestNetwork.unavailable();
    if (unavailable) {
      console.log(`      skipped: network namespaces need root and ip netns (${unavailable})`);
      this.skip();
    }
    const network = new TestNetwork(`apn${process.pid % 1000}`, `10.${77 + (process.pid % 100)}.0`);
    const processes: Process[] = [];
    try {
      network.setUp();
      const hosts = [network.addHost(1), network.addHost(2)];
      const port = await freePort();
      const coordinator = start([
        'coordinator',
        config,
        '--workers',
        '3',
        '--listen',
        `${network.gateway}:${port}`,
        '--out',
        join(root, 'netns'),
        '--run-id',
        'netns',
      ]);
      processes.push(coordinator);
      await waitFor(coordinator, /"port":\d+/);
      // Two workers on their own hosts, one beside the coordinator.
      for (const [i, host] of hosts.entries()) {
        const args = [CLI, 'worker', '--coordinator', `${network.gateway}:${port}`, '--id', `host${i + 1}`, '--advertise', host.address];
        const child = spawn('ip', ['netns', 'exec', host.namespace, process.execPath, ...args], {
          env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', AUTOPRUNE_JOIN_TOKEN: TOKEN },
          stdio: ['ignore', 'ignore', 'ignore'],
        });
        processes.push({ child, done: new Promise((resolve) => child.on('exit', (status) => resolve({ status, stderr: '' }))), output: () => '' });
      }
      processes.push(start(['worker', '--coordinator', `${network.gateway}:${port}`, '--id', 'local', '--advertise', network.gateway]));
      await waitFor(coordinator, /"event":"checkpoint.saved","phase":"prune","step":20\b/);
      hosts[0]!.cut();
      const result = await coordinator.done;
      assert.equal(result.status, 0, result.stderr.slice(-3000));
      const detected = events(result.stderr, 'failure.detected');
      assert.equal(detected[0]!.workerId, 'host1');
      assert.match(String(detected[0]!.how), /no heartbeat/);
      assert.match(result.stderr, /"event":"recovery.completed"[^\n]*"workers":\["(host2|local)","(host2|local)"\]/);
    } finally {
      for (const p of processes) p.child.kill('SIGKILL');
      network.tearDown();
    }
  });

  it('a run that falls below minWorkers waits for replacements, then fails with the reason', async () => {
    const strict = join(root, 'strict.yaml');
    writeFileSync(strict, toYaml({ ...CONFIG, distributed: { ...CONFIG.distributed, minWorkers: 2, rejoinWaitSeconds: 2 } }));
    const coordinator = start(['coordinator', strict, '--workers', '2', '--listen', '127.0.0.1:0', '--out', join(root, 'strict'), '--run-id', 'strict']);
    const port = (await waitFor(coordinator, /"port":(\d+)/))[1]!;
    const workers = ['s0', 's1'].map((id) => start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id]));
    try {
      await waitFor(coordinator, /"event":"checkpoint.saved","phase":"prune"/);
      workers[1]!.child.kill('SIGKILL');
      const result = await coordinator.done;
      assert.equal(result.status, 1);
      assert.match(result.stderr, /run failed: .*s1.*only 1 of the 2 workers needed came back within 2 s/);
      const survivor = await workers[0]!.done;
      assert.notEqual(survivor.status, 0);
    } finally {
      for (const p of [...workers, coordinator]) p.child.kill('SIGKILL');
    }
  });
});
