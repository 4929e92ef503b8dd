import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatReport, readReport } from '../coordinator/report.js';
import { fileSystemError } from '../shared/atomic-file.js';
import { InputError } from '../shared/errors.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { htmlReport } from './html-report/page.js';
import { readRunProgress } from './run-progress.js';

export const REPORT_COMMAND = defineCommand({
  name: 'report',
  summary: "a run's per-layer table and totals, or (--html) a page of plots",
  usage: ['report <run-dir> [--html [--out FILE]]'],
  description:
    'Prints the per-layer table and totals of a finished run. With --html, writes one self-contained page (no network\n' +
    'needed: the charting library is inside it): loss, accuracy and kept fraction against step with the phases shaded,\n' +
    'kept weights (and for neuron gates, channels) per layer, failures and recoveries on the timeline, and the config.\n' +
    'A run still going gets a page from its events and checkpoints so far.',
  arguments: [{ name: '<run-dir>', description: 'the run directory (--out of train or run)' }],
  options: {
    html: { type: 'boolean', description: 'writes the HTML report instead of printing the table' },
    out: { type: 'string', value: 'FILE', description: 'where --html writes the page', defaultText: '<run-dir>/report.html' },
  },
  examples: ['report runs/quickstart', 'report runs/quickstart --html --out quickstart.html'],
});

/** `autoprune report`. */
export async function report(args: string[]): Promise<void> {
  const parsed = parseCommand(REPORT_COMMAND, args);
  if (parsed.help) return printHelp(REPORT_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new InputError('autoprune report', 'expects exactly one run directory', { found: `${positionals.length} arguments` });
  const runDir = positionals[0]!;
  if (!values.html) {
    if (values.out !== undefined) throw new InputError('--out', 'goes with --html: the table is printed');
    process.stdout.write(`${formatReport(await readReport(runDir))}\n`);
    return;
  }
  const out = values.out ?? join(runDir, 'report.html');
  const page = htmlReport(await readRunProgress(runDir));
  try {
    await writeFile(out, page);
  } catch (error) {
    throw fileSystemError(out, 'write the HTML report', error);
  }
  process.stdout.write(`wrote ${out}\n`);
}
