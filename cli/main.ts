#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { formatReport, readReport } from '../coordinator/report.js';
import { InputError } from '../shared/errors.js';
import { DATA_USAGE, data } from './data.js';
import { coordinator, DISTRIBUTED_USAGE, RunFailed, run, worker } from './distributed.js';
import { SETUP_USAGE, setup } from './setup.js';
import { TRAIN_USAGE, train } from './train.js';
import { WATCH_USAGE, watchCommand } from './watch.js';

const USAGE = `usage:
${TRAIN_USAGE}
${DISTRIBUTED_USAGE}
  autoprune report <run-dir>
      prints the per-layer table and totals of a finished run
  ${WATCH_USAGE}
${DATA_USAGE}
${SETUP_USAGE}`;

async function report(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new InputError('autoprune report', 'expects exactly one run directory', { found: `${positionals.length} arguments` });
  process.stdout.write(`${formatReport(await readReport(positionals[0]!))}\n`);
}

async function watch(args: string[]): Promise<number> {
  return watchCommand(args, { stdout: process.stdout, stderr: process.stderr });
}

/** Each command resolves with its exit status, or with nothing (undefined) for success. */
const commands: Record<string, (args: string[]) => Promise<unknown>> = { train, run, coordinator, worker, report, watch, data, setup };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const execute = commands[command];
  if (!execute) {
    process.stderr.write(`autoprune: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
    return 2;
  }
  try {
    const status = await execute(rest);
    return typeof status === 'number' ? status : 0;
  } catch (error) {
    if (error instanceof RunFailed) {
      process.stderr.write(`autoprune ${command}: ${error.message}${error.runDirectory ? ` (run directory: ${error.runDirectory})` : ''}\n`);
      return 1;
    }
    // Bad input gets its message alone; anything else is a bug and keeps its stack.
    const argumentError = error instanceof TypeError && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS');
    if (error instanceof InputError || argumentError) {
      process.stderr.write(`autoprune ${command}: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
}

// Exit explicitly: an active WebGPU device keeps the event loop alive after the run.
process.exit(await main(process.argv.slice(2)));
