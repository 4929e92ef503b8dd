import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';

/**
 * A run never hangs: a worker killed, paused or busy between its registration and the first generation,
 * or dropped mid-run, leaves a run that completes or fails with a reason within a bound. Real processes
 * on loopback: `autoprune run` with its launcher, or a coordinator and worker processes. Every wait has a
 * deadline, and the choice of victim is printed.
 */

const CLI = join('dist', 'cli', 'main.js');
const TOKEN = 'never-hangs-token-0123456789';
/** Longer than any of these runs takes on a loaded machine, far shorter than forever. */
const RUN_BOUND_MS = 240_000;
const sgd = { type: 'sgd', lr: 0.05 };

/** A short LeNet-300-100 run; the heartbeat settings are the defaults (1 s, dropped after 3 s). */
function runConfig(pruneSteps: number) {
  return {
    seed: 5,
    backend: 'wasm',
    model: { name: 'lenet300', dropout: 0 },
    data: { dataset: 'mnist', trainSubset: 600, testSubset: 200 },
    batchSize: 60,
    phases: [
      { phase: 'dense', steps: 6, weights: sgd },
      { phase: 'prune', steps: pruneSteps, weights: sgd, aux: { type: 'sgd', lr: 1 } },
    ],
    evaluation: { every: 0, batchSize: 200 },
    logging: { every: 3 },
  };
}

interface Process {
  readonly child: ChildProcess;
  readonly done: Promise<{ status: number | null; stderr: string }>;
  output(): string;
}

function start(args: string[], env: NodeJS.ProcessEnv = {}): Process {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', AUTOPRUNE_JOIN_TOKEN: TOKEN, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout!.resume();
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<{ status: number | null; stderr: string }>((resolve) => child.on('exit', (status) => resolve({ status, stderr })));
  return { child, done, output: () => stderr };
}

/** The JSON log lines of `process` that carry `event` (and, if given, come from `workerId`). */
function events(process: Process, event: string, workerId?: string): Array<Record<string, unknown>> {
  return process
    .output()
    .split('\n')
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => workerId === undefined || line.workerId === workerId);
}

/** Waits (at most `timeoutMs`) for the first log line of `event` (from `workerId`). */
async function waitForEvent(process: Process, event: string, workerId?: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = events(process, event, workerId)[0];
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(`no ${event}${workerId ? ` from ${workerId}` : ''} within ${timeoutMs} ms in:\n${process.output().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits (at most `timeoutMs`) until `condition` holds. */
async function waitFor(condition: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The process's end, or a failed test after `timeoutMs`: a run that hangs is the bug these tests look for. */
async function ends(process: Process, timeoutMs = RUN_BOUND_MS): Promise<{ status: number | null; stderr: string }> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms:\n${process.output().slice(-3000)}`)), timeoutMs);
  });
  try {
    return await Promise.race([process.done, hung]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a run never hangs', function () {
  this.timeout(RUN_BOUND_MS + 60_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-hang-'));
  const short = join(root, 'short.yaml');
  writeFileSync(short, toYaml(runConfig(12)));
  const running: Process[] = [];
  const launch = (args: string[], env?: NodeJS.ProcessEnv) => {
    const process = start(args, env);
    running.push(process);
    return process;
  };
  afterEach(() => {
    for (const { child } of running.splice(0)) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  });

  it('SIGKILL of a worker right after it registers: the launcher starts a replacement and the run completes', async () => {
    const run = launch(['run', short, '--workers', '2', '--out', join(root, 'killed')]);
    const victim = await waitForEvent(run, 'worker.registered');
    console.log(`      killing ${victim.workerId} (pid ${victim.pid}), the first to register`);
    process.kill(victim.pid as number, 'SIGKILL');
    const result = await ends(run);
    assert.equal(result.status, 0, result.stderr.slice(-3000));
    const [replaced] = events(run, 'worker.replaced');
    assert.equal(replaced?.workerId, victim.workerId);
    assert.equal(replaced?.replacement, 'worker-2');
    assert.equal(replaced?.signal, 'SIGKILL');
    assert.equal(events(run, 'worker.registered', 'worker-2').length, 1);
  });

  it('SIGKILL of a worker and then of its replacement, with --max-restarts 1: the run fails naming the worker, the signal and the limit', async () => {
    const run = launch(['run', short, '--workers', '2', '--max-restarts', '1', '--out', join(root, 'exhausted')]);
    const victim = await waitForEvent(run, 'worker.registered');
    console.log(`      killing ${victim.workerId} (pid ${victim.pid}), then its replacement worker-2`);
    process.kill(victim.pid as number, 'SIGKILL');
    const replacement = await waitForEvent(run, 'worker.registered', 'worker-2');
    process.kill(replacement.pid as number, 'SIGKILL');
    const result = await ends(run);
    assert.equal(result.status, 1, result.stderr.slice(-3000));
    assert.match(result.stderr, /autoprune run: run failed: worker worker-2 exited on SIGKILL, and --max-restarts is 1 \(all 1 replacements used\)/);
  });

  it('SIGSTOP of a worker for 5 s right after it registers, then SIGCONT: dropped for silence, it registers again and the run completes', async () => {
    const run = launch(['run', short, '--workers', '2', '--out', join(root, 'paused')]);
    const victim = await waitForEvent(run, 'worker.registered');
    console.log(`      pausing ${victim.workerId} (pid ${victim.pid}), the first to register, for 5 s`);
    process.kill(victim.pid as number, 'SIGSTOP');
    await sleep(5000);
    process.kill(victim.pid as number, 'SIGCONT');
    const result = await ends(run);
    assert.equal(result.status, 0, result.stderr.slice(-3000));
    const left = events(run, 'worker.left').filter((line) => line.workerId === victim.workerId);
    assert.ok(left.length > 0, 'the coordinator dropped the paused worker');
    assert.equal(events(run, 'worker.registered', victim.workerId as string).length, 2, 'the paused worker registered again');
    assert.deepEqual(events(run, 'worker.replaced'), [], 'a paused worker is not a dead one');
  });

  it('SIGSTOP of a worker waiting at the rendezvous, then SIGCONT: its rendezvous called off, it finds itself dropped and registers again', async () => {
    const coordinator = launch(['coordinator', short, '--workers', '2', '--listen', '127.0.0.1:0', '--out', join(root, 'waiting'), '--run-id', 'waiting']);
    const { port } = await waitForEvent(coordinator, 'coordinator.listening');
    const worker = (id: string, env: NodeJS.ProcessEnv) => launch(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id], env);
    // w1 stays busy in its setup (its heartbeat thread keeps it in the run): w0 waits for it at the rendezvous.
    const waiting = worker('w0', { AUTOPRUNE_LOG_LEVEL: 'debug' });
    worker('w1', { AUTOPRUNE_TEST_BLOCK_AFTER_REGISTRATION_MS: '12000' });
    await waitFor(() => events(waiting, 'worker.state').some((move) => move.to === 'rendezvous'));
    await sleep(500);
    waiting.child.kill('SIGSTOP');
    await waitForEvent(coordinator, 'worker.left', 'w0');
    waiting.child.kill('SIGCONT');
    const result = await ends(coordinator);
    assert.equal(result.status, 0, result.stderr.slice(-3000));
    assert.equal((await ends(waiting)).status, 0);
    assert.equal(events(waiting, 'worker.registered').length, 2, 'w0 registered again');
    assert.match(waiting.output(), /"event":"coordinator.lost"/);
  });

  it('a worker whose main thread is blocked for 10 s during its setup (over three heartbeat timeouts) stays in the run: its heartbeats come from their own thread', async () => {
    const run = launch(['run', short, '--workers', '2', '--out', join(root, 'blocked')], { AUTOPRUNE_TEST_BLOCK_AFTER_REGISTRATION_MS: '10000' });
    const result = await ends(run);
    assert.equal(result.status, 0, result.stderr.slice(-3000));
    assert.deepEqual(events(run, 'worker.left'), [], 'no worker was dropped');
    assert.deepEqual(events(run, 'failure.detected'), []);
    for (const workerId of ['worker-0', 'worker-1']) assert.equal(events(run, 'worker.registered', workerId).length, 1, `${workerId} registered once`);
  });

  it('a worker dropped mid-run whose place a replacement took is fenced out: it exits with status 3 and says so, and the run completes', async () => {
    const long = join(root, 'long.yaml');
    writeFileSync(long, toYaml(runConfig(600)));
    const coordinator = launch(['coordinator', long, '--workers', '2', '--listen', '127.0.0.1:0', '--out', join(root, 'fenced'), '--run-id', 'fenced']);
    const { port } = await waitForEvent(coordinator, 'coordinator.listening');
    const worker = (id: string) => launch(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id]);
    const [paused] = [worker('w0'), worker('w1')];
    await waitForEvent(coordinator, 'run.started');
    paused!.child.kill('SIGSTOP');
    const detected = await waitForEvent(coordinator, 'failure.detected');
    assert.equal(detected.workerId, 'w0');
    await waitForEvent(coordinator, 'recovery.completed');
    worker('w2');
    await waitForEvent(coordinator, 'worker.joined', 'w2');
    paused!.child.kill('SIGCONT');
    const fenced = await ends(paused!, 120_000);
    assert.equal(fenced.status, 3, fenced.stderr.slice(-3000));
    assert.match(fenced.stderr, /autoprune worker: fenced out of run fenced: the run goes on without this worker \(.*already has its 2 workers/);
    const result = await ends(coordinator);
    assert.equal(result.status, 0, result.stderr.slice(-3000));
  });
});
