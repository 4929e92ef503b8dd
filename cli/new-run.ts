import { RunDirectory } from '../coordinator/run-directory.js';
import { BACKENDS, loadConfig, type RunConfig } from '../shared/config.js';
import { checkRunId } from '../shared/events/run-id.js';
import type { Logger } from '../shared/logging.js';

/** The options of `train`, `run` and `coordinator` that start a run from a config file. */
export const NEW_RUN_OPTIONS = {
  out: { type: 'string', value: 'DIR', description: 'the run directory to write', defaultText: 'runs/<config name>-<timestamp>' },
  backend: { type: 'string', value: BACKENDS.join('|'), description: "overrides the config's backend", defaultText: "the config's (auto)" },
  set: { type: 'string', multiple: true, value: 'KEY.PATH=VALUE', description: 'overrides one config key, e.g. --set batchSize=128' },
} as const;

/** What `train`, `run` and `coordinator` take from the command line to start a run afresh. */
export interface NewRunOptions {
  readonly set?: readonly string[] | undefined;
  readonly backend?: string | undefined;
  readonly runId?: string | undefined;
  readonly out?: string | undefined;
}

export interface NewRun {
  readonly config: RunConfig;
  readonly runId: string;
  readonly runDirectory: RunDirectory;
}

/** The config a run from `configPath` trains with: the file, its `--set` overrides and `--backend`. */
export function runConfigFrom(configPath: string, options: Pick<NewRunOptions, 'set' | 'backend'>): Promise<RunConfig> {
  const overrides = [...(options.set ?? [])];
  if (options.backend !== undefined) overrides.push(`backend=${options.backend}`);
  return loadConfig(configPath, overrides);
}

/**
 * A new run from a config file: the config with its `--set` and `--backend` overrides, a run id (given, or
 * the file's name and the time), and its run directory (given, or runs/<run id>).
 */
export async function newRun(configPath: string, options: NewRunOptions, logger: Logger): Promise<NewRun> {
  const config = await runConfigFrom(configPath, options);
  const name = configPath
    .replace(/^.*\//, '')
    .replace(/\.ya?ml$/, '')
    .replace(/[^A-Za-z0-9_-]/g, '-');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runId = checkRunId(options.runId ?? `${name}-${stamp}`, '--run-id');
  const runDirectory = await RunDirectory.create(options.out ?? `runs/${runId}`, config, logger);
  return { config, runId, runDirectory };
}
