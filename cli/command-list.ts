import type { CommandSpec } from './command.js';
import { DATA_COMMANDS } from './data.js';
import { COORDINATOR_COMMAND, RUN_COMMAND, WORKER_COMMAND } from './distributed.js';
import { EXPORT_COMMAND } from './export.js';
import { IMPORT_COMMAND } from './import.js';
import { K8S_RENDER_COMMAND } from './k8s.js';
import { REPORT_COMMAND } from './report.js';
import { SETUP_COMMAND } from './setup.js';
import { STATUS_COMMAND } from './status.js';
import { TRAIN_COMMAND } from './train.js';
import { WATCH_COMMAND } from './watch.js';

/**
 * Every command as `autoprune --help` lists it (cli/command.ts declares each one's options and help); its
 * own module so that test/unit/command.test.ts checks the help of exactly these, without running main.
 */
export const COMMAND_SPECS: readonly CommandSpec[] = [
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
