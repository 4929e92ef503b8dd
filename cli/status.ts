import { setTimeout as sleep } from 'node:timers/promises';
import { describeValue, InputError } from '../shared/errors.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { readRunProgress } from './run-progress.js';
import { type RunView, viewRun } from './run-view.js';

export const STATUS_COMMAND = defineCommand({
  name: 'status',
  summary: 'where a run stands: phase, step, workers, kept fraction, last checkpoint and accuracy, failures',
  usage: ['status <run-dir> [--watch [--interval SECONDS] [--timeout SECONDS]] [--json]'],
  description:
    "Reads a run directory (a finished, running or failed run's) and prints its state, phase and step, world size and\n" +
    'generation, the fraction of weights kept, the last checkpoint and its age, the last test accuracy and the failures\n' +
    'so far. --watch prints it again every --interval seconds until the run finishes or fails.',
  arguments: [{ name: '<run-dir>', description: 'the run directory (--out of train or run)' }],
  options: {
    json: { type: 'boolean', description: 'prints the status as one JSON object (one per refresh with --watch)' },
    watch: { type: 'boolean', description: 'refreshes until the run finishes or fails' },
    interval: { type: 'string', value: 'SECONDS', description: 'seconds between refreshes of --watch', default: '2' },
    timeout: { type: 'string', value: 'SECONDS', description: 'stops --watch after this long (exit 1)', defaultText: 'none' },
  },
  examples: ['status runs/quickstart', 'status runs/quickstart --watch --interval 5', 'status runs/quickstart --json | jq .kept'],
});

/** `status --json`: the view without its series, plus the checkpoint's age. */
export interface RunStatus {
  readonly runDirectory: string;
  readonly state: RunView['state'];
  readonly failedReason: string | null;
  readonly phase: RunView['phase'] | null;
  readonly step: number;
  readonly steps: number;
  readonly workers: number | null;
  readonly generation: number;
  readonly kept: number | null;
  readonly lastEvaluation: RunView['lastEvaluation'] | null;
  readonly lastCheckpoint: (NonNullable<RunView['lastCheckpoint']> & { readonly ageSeconds: number }) | null;
  readonly failures: number;
  readonly recoveries: number;
  readonly lastEventAt: string | null;
}

export function runStatus(runDirectory: string, view: RunView, now: number): RunStatus {
  const checkpoint = view.lastCheckpoint;
  return {
    runDirectory,
    state: view.state,
    failedReason: view.failedReason ?? null,
    phase: view.phase ?? null,
    step: view.step,
    steps: view.steps,
    workers: view.workers ?? null,
    generation: view.generation,
    kept: view.kept ?? null,
    lastEvaluation: view.lastEvaluation ?? null,
    lastCheckpoint: checkpoint ? { ...checkpoint, ageSeconds: Math.max(0, (now - checkpoint.savedAt) / 1000) } : null,
    failures: view.failures,
    recoveries: view.recoveries,
    lastEventAt: view.lastEventAt ?? null,
  };
}

export function formatStatus(status: RunStatus, now: number): string {
  const ago = (seconds: number) =>
    seconds < 90 ? `${Math.round(seconds)} s ago` : seconds < 5400 ? `${Math.round(seconds / 60)} min ago` : `${(seconds / 3600).toFixed(1)} h ago`;
  const lastEvent = status.lastEventAt === null ? '' : ` (last event ${ago((now - Date.parse(status.lastEventAt)) / 1000)})`;
  const state = status.state === 'failed' ? `failed: ${status.failedReason}` : `${status.state}${status.state === 'running' ? lastEvent : ''}`;
  const p = status.phase;
  const c = status.lastCheckpoint;
  const e = status.lastEvaluation;
  const rows: [string, string][] = [
    ['run', `${status.runDirectory}: ${state}`],
    ['phase', p ? `${p.name} (phase ${p.index + 1}), step ${p.step} of ${p.steps}` : 'not started'],
    ['steps', `${status.step} of ${status.steps} in all (${status.steps === 0 ? 0 : Math.floor((100 * status.step) / status.steps)}%)`],
    ['workers', status.workers === null ? 'none yet' : `${status.workers}, generation ${status.generation}`],
    [
      'kept',
      status.kept === null
        ? '-'
        : `${(100 * status.kept).toFixed(2)}% of the prunable weights${status.kept > 0 ? ` (${(1 / status.kept).toFixed(1)}x compression)` : ''}`,
    ],
    ['test accuracy', e ? `${(100 * e.testAccuracy).toFixed(2)}% (${e.phase} step ${e.step})` : '-'],
    ['checkpoint', c ? `${c.name} (step ${c.step} of phase ${c.phaseIndex + 1}), ${ago(c.ageSeconds)}` : 'none yet'],
    ['failures', `${status.failures} (${status.recoveries} recovered)`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

/** `autoprune status`; resolves with the exit status (1 when --watch gave up at --timeout). */
export async function status(args: string[]): Promise<number | undefined> {
  const parsed = parseCommand(STATUS_COMMAND, args);
  if (parsed.help) return printHelp(STATUS_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new InputError('autoprune status', 'expects exactly one run directory', { found: `${positionals.length} arguments` });
  const dir = positionals[0]!;
  const interval = seconds('--interval', values.interval);
  const timeout = values.timeout === undefined ? undefined : seconds('--timeout', values.timeout);
  const started = Date.now();
  for (;;) {
    const now = Date.now();
    const current = runStatus(dir, viewRun(await readRunProgress(dir)), now);
    process.stdout.write(values.json ? `${JSON.stringify(current)}\n` : `${formatStatus(current, now)}\n`);
    if (!values.watch || current.state === 'finished' || current.state === 'failed') return 0;
    if (timeout !== undefined && now - started >= timeout * 1000) {
      process.stderr.write(`autoprune status: the run neither finished nor failed within ${timeout} s\n`);
      return 1;
    }
    await sleep(interval * 1000);
    if (!values.json) process.stdout.write('\n');
  }
}

function seconds(option: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new InputError(option, 'must be a positive number of seconds', { found: describeValue(text) });
  return value;
}
