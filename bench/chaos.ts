import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { auditSamples, readAuditLogs } from '../engine/sample-audit.js';

/**
 * npm run bench:chaos [-- --workers 3 --steps 300 --every 60 --pause-seconds 5 --slow-start-seconds 6]
 * A fixed-length LeNet-300-100 run on MNIST with a coordinator and N worker processes on loopback, three
 * times: failure-free; with a worker killed (SIGKILL) every M prune steps and, a moment later, restarted;
 * and with slow-starting workers (each blocks its main thread for --slow-start-seconds right after it
 * registers, longer than the heartbeat timeout, as a long synchronous setup does) and a worker paused
 * (SIGSTOP) every M prune steps for --pause-seconds, then resumed (SIGCONT). Reports each failure's time to
 * detect and to recover and the steps redone (from the coordinator's events), how long a resumed worker
 * takes to be back in the ring, how many slow starters were dropped, the samples lost or repeated (from
 * the workers' sample audit logs against the one-process plan), and the throughput against the
 * failure-free run.
 */

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '3' },
    steps: { type: 'string', default: '300' },
    every: { type: 'string', default: '60' },
    'pause-seconds': { type: 'string', default: '5' },
    'slow-start-seconds': { type: 'string', default: '6' },
  },
});
const workers = Number(values.workers);
const steps = Number(values.steps);
const every = Number(values.every);
const pauseMs = Number(values['pause-seconds']) * 1000;
const slowStartMs = Number(values['slow-start-seconds']) * 1000;
const CLI = join('dist', 'cli', 'main.js');
const TOKEN = 'chaos-benchmark-token-0123456789';
const root = mkdtempSync(join(tmpdir(), 'autoprune-chaos-'));
const config = {
  seed: 11,
  backend: 'wasm',
  model: { name: 'lenet300' },
  data: { dataset: 'mnist', trainSubset: 6000, testSubset: 1000 },
  batchSize: 120,
  phases: [
    { phase: 'dense', steps: 20, weights: { lr: 1e-3 } },
    { phase: 'prune', steps, weights: { lr: 1e-3 }, aux: { lr: 0.1 } },
  ],
  evaluation: { every: 0, batchSize: 1000 },
  logging: { every: 10 },
  checkpoint: { every: 10, keep: 2 },
};
const configPath = join(root, 'chaos.yaml');
writeFileSync(configPath, toYaml(config));

interface Proc {
  child: ChildProcess;
  log: () => string;
  done: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', AUTOPRUNE_JOIN_TOKEN: TOKEN, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { child, log: () => text, done: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

async function until(proc: Proc, pattern: RegExp, from = 0): Promise<number> {
  for (;;) {
    const found = proc.log().slice(from).search(pattern);
    if (found >= 0) return from + found;
    if (proc.child.exitCode !== null) throw new Error(`process exited while waiting for ${pattern}:\n${proc.log().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function eventsOf(log: string, event: string): Array<Record<string, unknown>> {
  return log
    .split('\n')
    .filter((l) => l.includes(`"event":"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

type Scenario = 'calm' | 'kill' | 'pause';

/** A pause as the benchmark saw it: SIGSTOP for `pausedMs`, and from SIGCONT until the worker was back in the ring. */
interface Pause {
  readonly workerId: string;
  readonly pausedMs: number;
  /** Undefined when the run ended before the resumed worker was back in the ring. */
  readonly rejoinMs: number | undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs the job: `kill` kills a worker every `every` prune steps and restarts it; `pause` starts slow workers
 * and pauses one every `every` prune steps. Returns the seconds of the prune phase, the coordinator's log,
 * the sample logs and the pauses.
 */
async function runJob(name: string, scenario: Scenario): Promise<{ seconds: number; log: string; audit: string[]; pauses: Pause[] }> {
  const coordinator = start(['coordinator', configPath, '--workers', String(workers), '--listen', '127.0.0.1:0', '--out', join(root, name), '--run-id', name]);
  await until(coordinator, /"port":\d+/);
  const port = /"port":(\d+)/.exec(coordinator.log())![1];
  const audit: string[] = [];
  // Slow starters block their main thread once, right after registering (a test hook of `autoprune worker`).
  const env = scenario === 'pause' ? { AUTOPRUNE_TEST_BLOCK_AFTER_REGISTRATION_MS: String(slowStartMs) } : {};
  const spawnWorker = (id: string) => {
    const log = join(root, `${name}-${id}.jsonl`);
    audit.push(log);
    return start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', log], env);
  };
  const live = new Map(Array.from({ length: workers }, (_, i) => [`w${i}`, spawnWorker(`w${i}`)]));
  let restarts = 0;
  const pauses: Pause[] = [];
  try {
    if (scenario === 'pause') {
      for (let at = every; at < steps; at += every) {
        await until(coordinator, new RegExp(`"event":"checkpoint.saved","phase":"prune","step":${at}\\b`));
        const victim = [...live.keys()][pauses.length % live.size]!;
        const seen = coordinator.log().length;
        const stoppedAt = Date.now();
        live.get(victim)!.child.kill('SIGSTOP');
        // Dropped for its silence, the run re-forms without it...
        await until(coordinator, /"event":"recovery.completed"/, await until(coordinator, /"event":"failure.detected"/, seen));
        await sleep(stoppedAt + pauseMs - Date.now());
        const resumed = coordinator.log().length;
        const resumedAt = Date.now();
        live.get(victim)!.child.kill('SIGCONT');
        // ...and again with it, once it has registered anew, unless the run finishes first.
        // `until` fails once the coordinator has exited: a run that finished first.
        const rejoined = await until(coordinator, /"event":"recovery.completed"/, resumed).then(
          () => true,
          async (error: Error) => {
            if ((await coordinator.done) !== 0) throw error;
            return false;
          },
        );
        pauses.push({ workerId: victim, pausedMs: resumedAt - stoppedAt, rejoinMs: rejoined ? Date.now() - resumedAt : undefined });
        if (!rejoined) break;
      }
    }
    if (scenario === 'kill') {
      for (let at = every; at < steps; at += every) {
        await until(coordinator, new RegExp(`"event":"checkpoint.saved","phase":"prune","step":${at}\\b`));
        const victim = [...live.keys()][restarts % live.size]!;
        live.get(victim)!.child.kill('SIGKILL');
        live.delete(victim);
        const seen = coordinator.log().length;
        await until(coordinator, /"event":"recovery.completed"/, seen);
        const replacement = `r${++restarts}`;
        live.set(replacement, spawnWorker(replacement));
        await until(coordinator, /"event":"recovery.completed"/, coordinator.log().length);
      }
    }
    const code = await coordinator.done;
    if (code !== 0) throw new Error(`${name} run failed:\n${coordinator.log().slice(-2000)}`);
  } finally {
    for (const w of live.values()) w.child.kill('SIGKILL');
  }
  const report = JSON.parse(readFileSync(join(root, name, 'report.json'), 'utf8')) as { phases: Array<{ seconds: number }> };
  return { seconds: report.phases[1]!.seconds, log: coordinator.log(), audit, pauses };
}

/** Prints each failure (and its recovery), the sample audit and the throughput of a job against the failure-free run. */
function summarize(job: Awaited<ReturnType<typeof runJob>>, calmSeconds: number): void {
  const detected = eventsOf(job.log, 'failure.detected');
  const recoveries = eventsOf(job.log, 'recovery.completed');
  console.log('\n| failure | worker | detected after | recovered in | steps redone |\n| --- | --- | --- | --- | --- |');
  detected.forEach((d, i) => {
    // Each failure is followed by two re-formations: without the lost worker, then with its replacement (or itself, resumed).
    const recovery = recoveries[2 * i];
    console.log(
      `| ${i + 1} | ${d.workerId} | ${((d.detectMs as number) / 1000).toFixed(2)} s | ${(((recovery?.recoverMs as number) ?? NaN) / 1000).toFixed(2)} s | ${recovery?.stepsRedone ?? '?'} |`,
    );
  });
  const { lost, repeated } = auditSamples(readAuditLogs(job.audit.filter((file) => existsSync(file))), {
    seed: config.seed,
    trainSamples: config.data.trainSubset,
    batchSize: config.batchSize,
    phases: config.phases,
  });
  console.log(`\nsamples lost: ${lost}, repeated: ${repeated}`);
  console.log(
    `prune phase: ${job.seconds.toFixed(1)} s with failures against ${calmSeconds.toFixed(1)} s without: throughput ${((100 * calmSeconds) / job.seconds).toFixed(0)}% of the failure-free run`,
  );
}

console.log(`chaos benchmark: LeNet-300-100, ${workers} workers, ${steps} prune steps`);
const calm = await runJob('calm', 'calm');
console.log(`failure-free run: prune phase ${calm.seconds.toFixed(1)} s`);

console.log(`\n## a worker killed (SIGKILL) and replaced every ${every} steps`);
summarize(await runJob('chaos', 'kill'), calm.seconds);

console.log(
  `\n## slow starters (main thread blocked ${slowStartMs / 1000} s after registering) and a worker paused (SIGSTOP ${pauseMs / 1000} s, then SIGCONT) every ${every} steps`,
);
const paused = await runJob('paused', 'pause');
// A slow starter dropped before the run began would show as the coordinator's worker.left before run.started.
const beforeStart = paused.log.slice(0, paused.log.search(/"event":"run.started"/));
console.log(`slow starters dropped before the run started: ${eventsOf(beforeStart, 'worker.left').length} of ${workers}`);
summarize(paused, calm.seconds);
console.log('\n| pause | worker | paused for | back in the ring after SIGCONT |\n| --- | --- | --- | --- |');
paused.pauses.forEach((p, i) =>
  console.log(
    `| ${i + 1} | ${p.workerId} | ${(p.pausedMs / 1000).toFixed(2)} s | ${p.rejoinMs === undefined ? 'run ended first' : `${(p.rejoinMs / 1000).toFixed(2)} s`} |`,
  ),
);
process.exit(0);
