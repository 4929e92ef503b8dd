import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CollectiveOptions, RingMember } from '../collective/index.js';
import type { RunRequest, WorkerMessage } from './allreduce-worker.js';
import { anchorsDir, runAnchor } from './anchors.js';

/**
 * npm run bench:allreduce — bus bandwidth (bytes × 2(N-1)/N / seconds, the NCCL-tests convention) of
 * AllReducer.allReduce over one float32 array of 4, 64 and 256 MB, with 2 and 4 worker processes on
 * loopback, for each transport option; beside raw TCP loopback and torch.distributed gloo measured in
 * the same run. Each figure is the median over a few iterations after a warm-up, an iteration taking as
 * long as its slowest rank.
 *
 * Options: --sizes 4,64 --worlds 2 --options tcp-1,grpc-2 (names as in the table) to run a subset.
 */

interface Variant {
  readonly name: string;
  readonly options: Partial<CollectiveOptions>;
}

const BASE: CollectiveOptions = {
  transport: 'tcp',
  bucketBytes: 4 << 20,
  chunkBytes: 1 << 20,
  streams: 1,
  compression: 'none',
  timeoutMs: 30_000,
  maxMessageBytes: 64 << 20,
};

const VARIANTS: readonly Variant[] = [
  { name: 'tcp-1', options: { transport: 'tcp', streams: 1 } },
  { name: 'tcp-2', options: { transport: 'tcp', streams: 2 } },
  { name: 'tcp-4', options: { transport: 'tcp', streams: 4 } },
  { name: 'grpc-1', options: { transport: 'grpc', streams: 1 } },
  { name: 'grpc-2', options: { transport: 'grpc', streams: 2 } },
  { name: 'grpc-4', options: { transport: 'grpc', streams: 4 } },
  // fp16 on the chosen default (tcp, one connection per link).
  { name: 'tcp-1-fp16', options: { transport: 'tcp', streams: 1, compression: 'fp16' } },
];

function argument(name: string): string[] | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? undefined : process.argv[index + 1]!.split(',');
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

class Ring {
  private generation = 0;

  private constructor(
    private readonly children: ChildProcess[],
    private readonly members: RingMember[],
  ) {}

  static async start(world: number): Promise<Ring> {
    const script = fileURLToPath(new URL('./allreduce-worker.js', import.meta.url));
    const children = Array.from({ length: world }, (_, rank) => fork(script, [`bench-w${rank}`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const members = await Promise.all(
      children.map((child) =>
        nextMessage(child).then((message) => (message.type === 'ready' ? message.member : Promise.reject(new Error('worker did not start')))),
      ),
    );
    return new Ring(children, members);
  }

  /** Seconds per all-reduce (each the slowest rank's), or why it failed. */
  async run(options: CollectiveOptions, bytes: number, warmup: number, iterations: number): Promise<number[]> {
    this.generation++;
    const sessionKey = randomBytes(32).toString('hex');
    const replies = this.children.map((child) => nextMessage(child));
    this.children.forEach((child, rank) => {
      const request: RunRequest = { type: 'run', generation: this.generation, rank, members: this.members, sessionKey, options, bytes, warmup, iterations };
      child.send(request);
    });
    const results = await Promise.all(replies);
    const failed = results.find((result) => result.type !== 'result');
    if (failed?.type === 'failed') throw new Error(failed.error);
    const ranks = results.map((result) => (result.type === 'result' ? result : undefined)!);
    if (!ranks.every((result) => result.correct)) throw new Error('wrong sums');
    return ranks[0]!.seconds.map((_, iteration) => Math.max(...ranks.map((result) => result.seconds[iteration]!)));
  }

  stop(): void {
    for (const child of this.children) child.send({ type: 'exit' });
  }
}

function nextMessage(child: ChildProcess): Promise<WorkerMessage> {
  return new Promise((resolvePromise, reject) => {
    const onExit = (code: number | null) => reject(new Error(`benchmark worker exited (${code})`));
    child.once('exit', onExit);
    child.once('message', (message: WorkerMessage) => {
      child.off('exit', onExit);
      resolvePromise(message);
    });
  });
}

function rawTcp(): string {
  const dir = anchorsDir();
  if (dir === undefined) return 'unavailable (anchors directory not found)';
  const figures: number[] = [];
  for (let run = 0; run < 3; run++) {
    const result = spawnSync(process.execPath, [resolve(dir, 'tcp_loopback.js')], { encoding: 'utf8', timeout: 60_000 });
    const match = /(\d+) MB\/s/.exec(result.stdout);
    if (match) figures.push(Number(match[1]));
  }
  return figures.length === 0 ? 'unavailable (no output)' : `${(median(figures) / 1000).toFixed(2)}`;
}

function gloo(world: number, megabytes: number): string {
  const result = runAnchor('gloo_allreduce.py', [String(world), String(megabytes)], 300_000);
  if (!result.ok) return `unavailable (${result.reason})`;
  // The script counts MiB (its sizes are MiB); the table is in GB/s (10^9 bytes), as raw TCP's MB/s are 10^6.
  const match = /busbw=(\d+)MB\/s/.exec(result.stdout);
  return match ? ((Number(match[1]) * 2 ** 20) / 1e9).toFixed(2) : `unavailable (unexpected output: ${result.stdout.trim()})`;
}

async function main(): Promise<void> {
  const sizes = (argument('sizes') ?? ['4', '64', '256']).map(Number);
  const worlds = (argument('worlds') ?? ['2', '4']).map(Number);
  const chosen = argument('options');
  const variants = VARIANTS.filter((variant) => chosen === undefined || chosen.includes(variant.name));
  const extra = argument('set'); // e.g. --set chunkBytes=262144,bucketBytes=8388608
  const overrides = Object.fromEntries((extra ?? []).map((pair) => pair.split('=')).map(([key, value]) => [key!, Number(value)]));
  console.log(`all-reduce benchmark: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`);
  const tcp = rawTcp();
  console.log(`raw TCP loopback, one way: ${tcp} GB/s`);
  const rows: string[] = [];
  for (const world of worlds) {
    const ring = await Ring.start(world);
    try {
      for (const megabytes of sizes) {
        const bytes = megabytes * 1024 * 1024;
        const glooFigure = gloo(world, megabytes);
        for (const variant of variants) {
          const options: CollectiveOptions = { ...BASE, ...variant.options, ...overrides };
          // Enough iterations for a stable median on this noisy machine, fewer where one takes seconds.
          const iterations = megabytes <= 4 ? 20 : megabytes <= 64 ? 10 : options.transport === 'grpc' ? 3 : 5;
          let figure: string;
          try {
            const seconds = median(await ring.run(options, bytes, 1, iterations));
            figure = ((bytes * (2 * (world - 1))) / world / seconds / 1e9).toFixed(2);
          } catch (error) {
            figure = `failed: ${(error as Error).message}`;
          }
          const row = `| ${megabytes} MB | ${world} | ${variant.name} | ${figure} | ${tcp} | ${glooFigure} |`;
          rows.push(row);
          console.log(row);
        }
      }
    } finally {
      ring.stop();
    }
  }
  console.log('\n| size | N | option | busbw GB/s | raw TCP GB/s (one way) | gloo busbw GB/s |\n| --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
}

void main();
