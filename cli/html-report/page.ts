import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { formatReport } from '../../coordinator/report.js';
import type { RunProgress } from '../run-progress.js';
import { viewRun } from '../run-view.js';
import { formatStatus, runStatus } from '../status.js';
import { drawReport, type ReportData } from './draw.js';

/**
 * `autoprune report --html`: one self-contained page. uPlot's script and styles are inlined (a report opened
 * years later, or offline, still draws), the run's data is embedded as JSON, and draw.ts's source draws it.
 */

const require = createRequire(import.meta.url);

/** uPlot's browser build and its styles, from the installed package. */
function uplotAssets(): { script: string; css: string } {
  const script = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  const css = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  return { script, css };
}

/** The charts' data: the step series aligned on one x axis (test accuracy where evaluated, gaps elsewhere). */
export function reportData(progress: RunProgress): ReportData {
  const view = viewRun(progress);
  const points = new Map(view.series.map((p) => [p.step, p]));
  const tests = new Map(view.evaluations.map((e) => [e.step, e.testAccuracy]));
  const steps = [...new Set([...points.keys(), ...tests.keys()])].sort((a, b) => a - b);
  return {
    phases: view.phases,
    steps,
    loss: steps.map((s) => points.get(s)?.loss ?? null),
    auxLoss: steps.map((s) => points.get(s)?.auxLoss ?? null),
    trainAccuracy: steps.map((s) => points.get(s)?.accuracy ?? null),
    testAccuracy: steps.map((s) => tests.get(s) ?? null),
    kept: steps.map((s) => points.get(s)?.kept ?? null),
    marks: view.marks,
    layers: view.layers,
  };
}

export function htmlReport(progress: RunProgress, now = Date.now()): string {
  const view = viewRun(progress);
  const data = reportData(progress);
  const { script, css } = uplotAssets();
  const status = formatStatus(runStatus(progress.dir, view, now), now);
  const marks = view.marks.map((m) => `<li class="${m.kind}">step ${m.step} (${escapeHtml(m.time)}): ${escapeHtml(m.text)}</li>`).join('\n');
  const empty = (what: string) => `<p class="note">${what}</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>autoprune report: ${escapeHtml(progress.dir)}</title>
<style>${css}</style>
<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 920px; color: #202124; }
pre { background: #f8f9fa; padding: 12px; overflow-x: auto; font-size: 12px; }
.chart { margin: 16px 0; }
.note { color: #5f6368; font-style: italic; }
li.failure { color: #d93025; } li.recovery { color: #188038; } li.resume { color: #1a73e8; }
</style>
</head>
<body>
<h1>autoprune run report</h1>
<pre id="status">${escapeHtml(status)}</pre>
<div id="charts"></div>
${data.steps.length === 0 ? empty('No training steps logged yet.') : ''}
${data.layers.length === 0 ? empty('No evaluation has described the layers yet.') : ''}
<h2>Failures and recoveries</h2>
${marks ? `<ul id="marks">${marks}</ul>` : empty('None.')}
${progress.report ? `<h2>Result</h2>\n<pre id="result">${escapeHtml(formatReport(progress.report))}</pre>` : ''}
<h2>Config</h2>
<pre id="config">${escapeHtml(progress.configYaml)}</pre>
<script>${script}</script>
<script id="report-data" type="application/json">${JSON.stringify(data).replace(/</g, '\\u003c')}</script>
<script>
(${drawReport.toString()})(JSON.parse(document.getElementById('report-data').textContent), uPlot);
</script>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
