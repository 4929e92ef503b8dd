import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RunReport } from '../coordinator/report.js';

/**
 * npm run bench:mnist [-- --net lenet300|lenet5 ... --set key=value ...]
 * dense → prune → finetune on the full real MNIST with the examples' settings, printed beside the
 * published references and the PyTorch AutoPrune reference (../shared/anchors/autoprune_torch_ref.py,
 * same rules and hyperparameters; its figures at 20,000 prune iterations from the anchors README).
 */

const REFERENCES = {
  lenet300: { han: '12x', dns: '56x', sparseVd: '68x', autoprunePaper: '-', torchRef: '26.7x (1.50% err)', target: 60 },
  lenet5: { han: '12x', dns: '108x', sparseVd: '280x', autoprunePaper: '310x, 7% FLOPs', torchRef: '109.3x (0.67% err)', target: 200 },
} as const;

type Net = keyof typeof REFERENCES;

const { values } = parseArgs({ options: { net: { type: 'string', multiple: true }, set: { type: 'string', multiple: true } } });
const nets = (values.net ?? ['lenet300', 'lenet5']) as Net[];
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

const rows: string[][] = [];
for (const net of nets) {
  if (!(net in REFERENCES)) throw new Error(`unknown net ${net}; expected lenet300 or lenet5`);
  const outDir = join('runs', `bench-mnist-${net}-${stamp}`);
  const args = ['dist/cli/main.js', 'train', `examples/${net}-mnist.yaml`, '--out', outDir, ...(values.set ?? []).flatMap((s) => ['--set', s])];
  console.log(`running: node ${args.join(' ')}`);
  const started = Date.now();
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`${net} run failed with status ${result.status}`);
  const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as RunReport;
  const dense = report.phases.find((p) => p.name === 'dense');
  const final = report.phases[report.phases.length - 1]!;
  const err = (acc: number | undefined) => (acc === undefined ? '-' : `${(100 * (1 - acc)).toFixed(2)}%`);
  const ref = REFERENCES[net];
  rows.push([
    net,
    err(dense?.testAccuracy),
    err(final.testAccuracy),
    `${report.totals.compression.toFixed(1)}x`,
    `${((100 * report.totals.flopsEffective) / report.totals.flops).toFixed(1)}%`,
    `${ref.target}x`,
    `${((Date.now() - started) / 60000).toFixed(1)} min`,
    ref.han,
    ref.dns,
    ref.sparseVd,
    ref.autoprunePaper,
    ref.torchRef,
  ]);
}
const header = [
  'net',
  'dense err',
  'final err',
  'compression',
  'FLOPs kept',
  'target',
  'time',
  'Han 2015',
  'DNS',
  'Sparse VD',
  'AutoPrune paper',
  'PyTorch ref @20k',
];
const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
