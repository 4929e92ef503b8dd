import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { auditSamples, readAuditLogs } from '../engine/sample-audit.js';

/**
 * npm run bench:chaos [-- --workers 3 --steps 300 --every 60]
 * A fixed-length LeNet-300-100 run on MNIST with a coordinator and N worker processes on loopback; every
 * M prune steps one worker is killed with SIGKILL and, a moment later, restarted. Reports each failure's
 * time to detect and to recover and the steps redone (from the coordinator's events), the samples lost or
 * repeated (from the workers' sample audit logs against the one-process plan), and the throughput against
 * a failure-free run of the same length measured in the same benchmark.
 */

const { values } = parseArgs({
  options: { workers: { type: 'string', default: '3' }, steps: { type: 'string', default: '300' }, every: { type: 'string', default: '60' } },
});
const workers = Number(values.workers);
const steps = Number(values.steps);
const every = Number(values.every);
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

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', AUTOPRUNE_JOIN_TOKEN: TOKEN },
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

/** Runs the job; with `chaos`, kills a worker every `every` prune steps and restarts it. Returns seconds of the prune phase. */
async function runJob(name: string, chaos: boolean): Promise<{ seconds: number; log: string; audit: string[] }> {
  const coordinator = start(['coordinator', configPath, '--workers', String(workers), '--listen', '127.0.0.1:0', '--out', join(root, name), '--run-id', name]);
  await until(coordinator, /"port":\d+/);
  const port = /"port":(\d+)/.exec(coordinator.log())![1];
  const audit: string[] = [];
  const spawnWorker = (id: string) => {
    const log = join(root, `${name}-${id}.jsonl`);
    audit.push(log);
    return start(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--sample-log', log]);
  };
  const live = new Map(Array.from({ length: workers }, (_, i) => [`w${i}`, spawnWorker(`w${i}`)]));
  let restarts = 0;
  try {
    if (chaos) {
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
  return { seconds: report.phases[1]!.seconds, log: coordinator.log(), audit };
}

console.log(`chaos benchmark: LeNet-300-100, ${workers} workers, ${steps} prune steps, a worker killed (SIGKILL) and replaced every ${every} steps`);
const calm = await runJob('calm', false);
console.log(`failure-free run: prune phase ${calm.seconds.toFixed(1)} s`);
const chaos = await runJob('chaos', true);
const detected = eventsOf(chaos.log, 'failure.detected');
const recoveries = eventsOf(chaos.log, 'recovery.completed');
const { lost, repeated } = auditSamples(readAuditLogs(chaos.audit.filter((file) => existsSync(file))), {
  seed: config.seed,
  trainSamples: config.data.trainSubset,
  batchSize: config.batchSize,
  phases: config.phases,
});
console.log('\n| failure | worker | detected after | recovered in | steps redone |\n| --- | --- | --- | --- | --- |');
detected.forEach((d, i) => {
  // Each failure is followed by two re-formations: without the lost worker, then with its replacement.
  const recovery = recoveries[2 * i];
  console.log(
    `| ${i + 1} | ${d.workerId} | ${((d.detectMs as number) / 1000).toFixed(2)} s | ${(((recovery?.recoverMs as number) ?? NaN) / 1000).toFixed(2)} s | ${recovery?.stepsRedone ?? '?'} |`,
  );
});
console.log(`\nsamples lost: ${lost}, repeated: ${repeated}`);
console.log(
  `prune phase: ${chaos.seconds.toFixed(1)} s with failures against ${calm.seconds.toFixed(1)} s without: throughput ${((100 * calm.seconds) / chaos.seconds).toFixed(0)}% of the failure-free run`,
);
process.exit(0);
