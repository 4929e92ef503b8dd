import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { backendOptions, initBackend } from '../engine/backend.js';
import { DispatchCounter, type DispatchTally } from '../engine/dispatch-counter.js';
import { runAnchor } from './anchors.js';
import { StepWorkload, type WorkloadSpec } from './workloads.js';

/**
 * npm run bench:gpu — the webgpu backend's training step on the GPU at hand, beside PyTorch on the same
 * GPU in the same call (torch_gpu_ref.py, fp32 and TF32): LeNet-5 at batch 64 and 512, ResNet-50 and
 * MobileNetV2 at 224x224 and batch 64; for each, a dense step and an AutoPrune iteration: time, images/s,
 * dispatches and activation-sized traffic. On a software adapter (lavapipe) it never times anything and
 * counts with a dry run (engine/dispatch-counter.ts), so the counts are checkable without a GPU.
 *
 *   node dist/bench/gpu.js [--nets lenet5-64,resnet50] [--reps N] [--json FILE]
 * A software adapter is used only with AUTOPRUNE_WEBGPU_ALLOW_SOFTWARE=1. docs/gpu-notes.md reads the figures.
 */

const WORKLOADS: Readonly<Record<string, WorkloadSpec & { readonly anchor: string }>> = {
  'lenet5-64': { model: 'lenet5', batch: 64, anchor: 'lenet5 batch64' },
  'lenet5-512': { model: 'lenet5', batch: 512, anchor: 'lenet5 batch512' },
  resnet50: { model: 'resnet50', batch: 64, anchor: 'resnet50-224 batch64' },
  mobilenetv2: { model: 'mobilenetv2', batch: 64, anchor: 'mobilenetv2-224 batch64' },
};

interface Row {
  readonly net: string;
  readonly batch: number;
  readonly dense: { readonly ms?: number; readonly tally: DispatchTally };
  readonly iteration: { readonly ms?: number; readonly tally: DispatchTally };
  /** Bytes of reading and writing every masked layer's output once, one pass. */
  readonly activationBytesPerPass: number;
  readonly torch?: { readonly fp32?: number; readonly tf32?: number };
}

/** Median of `reps` timings of `work` run `inner` times, each waited for on the device. */
async function timeMs(workload: StepWorkload, work: () => void, reps: number): Promise<number> {
  work();
  await workload.settle(); // compiles every pipeline, allocates every buffer
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const start = performance.now();
    work();
    await workload.settle();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/**
 * The dispatches of one dense step and of one AutoPrune iteration, each counted after one uncounted run
 * (which makes the optimizers' slots). One attachment for both: a dry run's tensors are known only to
 * the counter that made them.
 */
async function count(workload: StepWorkload, execute: boolean): Promise<{ dense: DispatchTally; iteration: DispatchTally }> {
  const counter = DispatchCounter.attach({ activationElements: workload.smallestActivation, execute });
  try {
    const once = async (work: () => void): Promise<DispatchTally> => {
      work();
      counter.take();
      work();
      const tally = counter.take();
      if (execute) await workload.settle();
      return tally;
    };
    return { dense: await once(() => workload.dense()), iteration: await once(() => workload.iteration()) };
  } finally {
    counter.detach();
  }
}

async function isSoftwareAdapter(): Promise<{ software: boolean; description: string }> {
  // activateWebGpu put Dawn's GPU on navigator; its adapter is the one the backend took.
  const gpu = (globalThis as unknown as { navigator: { gpu: { requestAdapter(o: object): Promise<{ info: GPUAdapterInfoLike } | null> } } }).navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  const info = adapter?.info;
  return { software: info?.isFallbackAdapter === true, description: [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') };
}

interface GPUAdapterInfoLike {
  readonly isFallbackAdapter?: boolean;
  readonly vendor?: string;
  readonly architecture?: string;
  readonly description?: string;
}

function torchTimes(stdout: string): Map<string, { fp32?: number; tf32?: number }> {
  const times = new Map<string, { fp32?: number; tf32?: number }>();
  for (const m of stdout.matchAll(/^torch (fp32|tf32) (\S+ batch\d+) step ([\d.]+) ms/gm)) {
    const entry = times.get(m[2]!) ?? {};
    entry[m[1] as 'fp32' | 'tf32'] = Number(m[3]);
    times.set(m[2]!, entry);
  }
  return times;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { nets: { type: 'string', default: Object.keys(WORKLOADS).join(',') }, reps: { type: 'string', default: '5' }, json: { type: 'string' } },
  });
  const nets = values.nets.split(',');
  for (const net of nets) if (!WORKLOADS[net]) throw new Error(`unknown net '${net}'; one of ${Object.keys(WORKLOADS).join(', ')}`);
  const reps = Number(values.reps);

  await initBackend('webgpu', () => {}, backendOptions({ webgpu: { allowSoftwareAdapter: false } }, process.env));
  const adapter = await isSoftwareAdapter();
  console.log(`webgpu adapter: ${adapter.description}${adapter.software ? ' (software: counts only, dry run, never timed)' : ''}`);
  let torch = new Map<string, { fp32?: number; tf32?: number }>();
  if (!adapter.software) {
    const anchor = runAnchor('torch_gpu_ref.py', [], 900_000);
    if (anchor.ok) {
      process.stdout.write(anchor.stdout);
      torch = torchTimes(anchor.stdout);
    } else console.log(`PyTorch GPU anchor not run: ${anchor.reason}`);
  }

  const rows: Row[] = [];
  for (const net of nets) {
    const spec = WORKLOADS[net]!;
    const workload = new StepWorkload(spec);
    try {
      const execute = !adapter.software;
      const tallies = await count(workload, execute);
      const row: Row = {
        net,
        batch: spec.batch,
        dense: { tally: tallies.dense, ...(execute ? { ms: await timeMs(workload, () => workload.dense(), reps) } : {}) },
        iteration: { tally: tallies.iteration, ...(execute ? { ms: await timeMs(workload, () => workload.iteration(), reps) } : {}) },
        activationBytesPerPass: 2 * workload.activationBytes,
        ...(torch.has(spec.anchor) ? { torch: torch.get(spec.anchor)! } : {}),
      };
      rows.push(row);
      console.log(
        `${net}: dense ${row.dense.tally.dispatches} dispatches (${topPrograms(row.dense.tally)}); iteration ${row.iteration.tally.dispatches} (${topPrograms(row.iteration.tally)})`,
      );
    } finally {
      workload.dispose();
    }
  }
  printTable(rows);
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ adapter, rows }, null, 2)}\n`);
}

function topPrograms(tally: DispatchTally): string {
  return tally.byProgram
    .slice(0, 6)
    .map(([name, n]) => `${name.replace(/Program$/, '')} ${n}`)
    .join(', ');
}

function printTable(rows: readonly Row[]): void {
  const fixed = (value: number | undefined, digits = 1) => (value === undefined ? '-' : value.toFixed(digits));
  const gb = (bytes: number) => (bytes / 1e9).toFixed(2);
  const header = [
    'net',
    'batch',
    'dense ms',
    'img/s',
    'iteration ms',
    'iteration / dense',
    'dispatches dense',
    'dispatches iteration',
    'copies dense',
    'copies iteration',
    'act. GB dense',
    'act. GB iteration',
    'iteration traffic / (4 passes x read+write)',
    'torch fp32 ms',
    'torch tf32 ms',
    'dense / torch fp32',
  ];
  const body = rows.map((r) => [
    r.net,
    String(r.batch),
    fixed(r.dense.ms),
    r.dense.ms === undefined ? '-' : ((r.batch * 1000) / r.dense.ms).toFixed(0),
    fixed(r.iteration.ms),
    r.dense.ms === undefined || r.iteration.ms === undefined ? '-' : (r.iteration.ms / r.dense.ms).toFixed(2),
    String(r.dense.tally.dispatches),
    String(r.iteration.tally.dispatches),
    String(r.dense.tally.copies),
    String(r.iteration.tally.copies),
    gb(r.dense.tally.activationBytes),
    gb(r.iteration.tally.activationBytes),
    (r.iteration.tally.activationBytes / (4 * r.activationBytesPerPass)).toFixed(1),
    fixed(r.torch?.fp32),
    fixed(r.torch?.tf32),
    r.dense.ms === undefined || r.torch?.fp32 === undefined ? '-' : (r.dense.ms / r.torch.fp32).toFixed(1),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n'));
  console.log(
    '\nAn AutoPrune iteration is a W step and an M step (4 passes). Copies: buffer-to-buffer copies (the fused optimizer gathers and scatters its flat buffers), not dispatches.' +
      ' Activation-sized: bindings at least as large as the smallest layer output;' +
      ' the reference reads and writes every masked layer output once per pass.',
  );
}

await main();
// Dawn's device keeps node alive.
process.exit(0);
