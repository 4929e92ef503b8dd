import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerCount, NetworkCount } from '../engine/counters.js';
import type { ExportSummary } from '../engine/thin/exporter.js';
import { InputError } from '../shared/errors.js';
import type { DataReport } from './bad-samples.js';

/** report.json of a run directory, and its human-readable table. */

export interface PhaseSummary {
  readonly name: string;
  readonly steps: number;
  readonly seconds: number;
  readonly testAccuracy: number;
}

export interface RunReport {
  readonly model: string;
  readonly backend: string;
  readonly phases: readonly PhaseSummary[];
  readonly layers: readonly LayerCount[];
  /** Over the prunable kernels; compression = params / remaining, FLOPs as multiply-accumulates. */
  readonly totals: NetworkCount['totals'];
  /** All trainable parameters of the model (kernels, biases, batch-norm γ and β). */
  readonly modelParams: number;
  /** Samples left out as bad under `data.badSamples: skip` (a dataset read from files: ImageNet). */
  readonly data?: DataReport;
  /** The latest `autoprune export`: the thin and dense models' parameters, FLOPs and inference times. */
  readonly export?: ExportSummary;
}

export const REPORT_FILE = 'report.json';

export async function readReport(runDir: string): Promise<RunReport> {
  const path = join(runDir, REPORT_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InputError(path, 'cannot read the run report', {
      expected: 'a run directory written by `autoprune train`',
      found: (error as NodeJS.ErrnoException).code ?? String(error),
    });
  }
  let report: unknown;
  try {
    report = JSON.parse(text);
  } catch (error) {
    throw new InputError(path, `not valid JSON: ${(error as Error).message}`);
  }
  const r = report as Partial<RunReport>;
  if (!r || typeof r !== 'object' || !Array.isArray(r.layers) || !Array.isArray(r.phases) || typeof r.totals !== 'object') {
    throw new InputError(path, 'not a run report', { expected: 'model, phases, layers and totals' });
  }
  return report as RunReport;
}

export function formatReport(report: RunReport): string {
  const percent = (part: number, whole: number) => (whole === 0 ? '-' : `${((100 * part) / whole).toFixed(2)}%`);
  const rows = report.layers.map((l) => [
    l.name,
    `[${l.shape.join('x')}]`,
    l.granularity,
    String(l.params),
    String(l.remaining),
    percent(l.remaining, l.params),
    formatCount(l.flops),
    formatCount(l.flopsEffective),
  ]);
  const t = report.totals;
  const totals = ['total', '', '', String(t.params), String(t.remaining), percent(t.remaining, t.params), formatCount(t.flops), formatCount(t.flopsEffective)];
  const header = ['layer', 'shape', 'gates', 'params', 'remaining', 'kept', 'MACs', 'MACs kept'];
  const table = [header, ...rows, totals];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const line = (row: string[]) => row.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const phases = report.phases.map(
    (p) =>
      `  ${p.name.padEnd(9)} ${String(p.steps).padStart(7)} steps ${p.seconds.toFixed(1).padStart(8)} s   test accuracy ${(100 * p.testAccuracy).toFixed(2)}%`,
  );
  return [
    `model ${report.model} (${report.modelParams} parameters), backend ${report.backend}`,
    ...phases,
    '',
    line(header),
    rule,
    ...rows.map(line),
    rule,
    line(totals),
    '',
    `compression ${t.compression === null ? 'inf' : t.compression.toFixed(1)}x, FLOPs kept ${percent(t.flopsEffective, t.flops)}`,
    ...(report.export ? ['', formatExport(report.export)] : []),
  ].join('\n');
}

/** The thin and dense models of an export side by side: parameters, FLOPs (MACs), time per image. */
export function formatExport(summary: ExportSummary): string {
  const time = (ms: number | null) => (ms === null ? '-' : `${ms.toFixed(2)} ms`);
  const rows = [
    ['', 'parameters', 'MACs', `per image (${summary.backend})`],
    ['dense', formatCount(summary.denseModel.params), formatCount(summary.denseModel.flops), time(summary.denseModel.msPerImage)],
    ['thin', formatCount(summary.thinModel.params), formatCount(summary.thinModel.flops), time(summary.thinModel.msPerImage)],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const lines = rows.map((row) => `  ${row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')}`);
  const closed = summary.allClosed.length > 0 ? [`  every unit closed (one zeroed channel kept): ${summary.allClosed.join(', ')}`] : [];
  return [`export: ${summary.thin ? 'thin' : 'dense'} ${summary.format} (${summary.files.join(', ')})`, ...lines, ...closed].join('\n');
}

function formatCount(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}K`;
  return String(value);
}
