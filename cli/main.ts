#!/usr/bin/env node
import { InputError } from '../shared/errors.js';
import { formatCommandList } from './command.js';
import { COMMAND_SPECS } from './command-list.js';
import { data } from './data.js';
import { coordinator, RunFailed, run, worker } from './distributed.js';
import { exportCommand } from './export.js';
import { importCommand } from './import.js';
import { k8s } from './k8s.js';
import { nearest } from './nearest.js';
import { report } from './report.js';
import { setup } from './setup.js';
import { INTERRUPTED_EXIT_STATUS, Interrupted } from './signals.js';
import { status } from './status.js';
import { train } from './train.js';
import { watchCommand } from './watch.js';

const USAGE = formatCommandList(COMMAND_SPECS);

async function watch(args: string[]): Promise<number> {
  return watchCommand(args, { stdout: process.stdout, stderr: process.stderr });
}

/** Each command resolves with its exit status, or with nothing (undefined) for success. */
const commands: Record<string, (args: string[]) => Promise<unknown>> = {
  train,
  run,
  coordinator,
  worker,
  status,
  report,
  watch,
  data,
  import: importCommand,
  export: exportCommand,
  k8s,
  setup,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const execute = commands[command];
  if (!execute) {
    const guess = nearest(command, Object.keys(commands));
    process.stderr.write(`autoprune: unknown command ${JSON.stringify(command)}${guess ? `; the nearest is ${guess}` : ''}\n${USAGE}\n`);
    return 2;
  }
  try {
    const status = await execute(rest);
    return typeof status === 'number' ? status : 0;
  } catch (error) {
    if (error instanceof Interrupted) {
      process.stderr.write(
        `autoprune ${command}: ${error.message}${error.runDirectory ? ` (run directory: ${error.runDirectory}; resume it with --resume or --resume-or-start)` : ''}\n`,
      );
      return INTERRUPTED_EXIT_STATUS[error.signal];
    }
    if (error instanceof RunFailed) {
      process.stderr.write(`autoprune ${command}: ${error.message}${error.runDirectory ? ` (run directory: ${error.runDirectory})` : ''}\n`);
      return 1;
    }
    // Bad input gets its message alone; anything else is a bug and keeps its stack.
    if (error instanceof InputError) {
      process.stderr.write(`autoprune ${command}: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

// Exit explicitly: an active WebGPU device keeps the event loop alive after the run.
process.exit(await main(process.argv.slice(2)));
