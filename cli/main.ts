#!/usr/bin/env node
import { InputError } from '../shared/errors.js';
import { type CommandSpec, formatCommandList } from './command.js';
import { DATA_COMMANDS, data } from './data.js';
import { COORDINATOR_COMMAND, coordinator, RUN_COMMAND, RunFailed, run, WORKER_COMMAND, worker } from './distributed.js';
import { EXPORT_COMMAND, exportCommand } from './export.js';
import { IMPORT_COMMAND, importCommand } from './import.js';
import { K8S_RENDER_COMMAND, k8s } from './k8s.js';
import { nearest } from './nearest.js';
import { REPORT_COMMAND, report } from './report.js';
import { SETUP_COMMAND, setup } from './setup.js';
import { INTERRUPTED_EXIT_STATUS, Interrupted } from './signals.js';
import { STATUS_COMMAND, status } from './status.js';
import { TRAIN_COMMAND, train } from './train.js';
import { WATCH_COMMAND, watchCommand } from './watch.js';

/** Every command as `autoprune --help` lists it (cli/command.ts declares each one's options and help). */
const SPECS: readonly CommandSpec[] = [
  TRAIN_COMMAND,
  RUN_COMMAND,
  COORDINATOR_COMMAND,
  WORKER_COMMAND,
  STATUS_COMMAND,
  REPORT_COMMAND,
  WATCH_COMMAND,
  ...DATA_COMMANDS,
  IMPORT_COMMAND,
  EXPORT_COMMAND,
  K8S_RENDER_COMMAND,
  SETUP_COMMAND,
];

const USAGE = formatCommandList(SPECS);

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
