import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunReport, readReport } from '../coordinator/report.js';
import { RUN_FILES } from '../coordinator/run-directory.js';
import { fileSystemError } from '../shared/atomic-file.js';
import { CheckpointStore, MANIFEST_FILE } from '../shared/checkpoint-store.js';
import { loadConfig, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { parseRunEvent, type RunEvent } from '../shared/events/types.js';

/**
 * What a run directory tells of its run, finished or not: the config, the events the coordinator logged
 * so far (events.jsonl), the checkpoints on disk and, once finished, report.json. `status` and the HTML
 * report read it; they never write into the run directory.
 */

export interface CheckpointOnDisk {
  readonly name: string;
  readonly phaseIndex: number;
  readonly step: number;
  /** When it was written (ms since the epoch), from its manifest. */
  readonly savedAt: number;
}

export interface RunProgress {
  readonly dir: string;
  readonly config: RunConfig;
  readonly configYaml: string;
  readonly events: readonly RunEvent[];
  readonly checkpoints: readonly CheckpointOnDisk[];
  readonly report: RunReport | undefined;
  /** The newest generation the coordinator recorded (0 before the first formed). */
  readonly generation: number;
}

export async function readRunProgress(dir: string): Promise<RunProgress> {
  const configPath = join(dir, RUN_FILES.config);
  const configYaml = await readText(configPath, 'read the run config');
  if (configYaml === undefined) throw new InputError(dir, 'is not a run directory', { expected: `${RUN_FILES.config} in it`, found: 'none' });
  const config = await loadConfig(configPath);
  const eventsText = (await readText(join(dir, RUN_FILES.events), 'read the run events')) ?? '';
  const report = (await readText(join(dir, RUN_FILES.report), 'read the report')) === undefined ? undefined : await readReport(dir);
  const generationText = await readText(join(dir, RUN_FILES.generation), 'read the generation number');
  const generation = generationText === undefined ? 0 : Number(generationText.trim());
  if (!Number.isSafeInteger(generation) || generation < 0)
    throw new InputError(join(dir, RUN_FILES.generation), 'is not a generation number', { found: JSON.stringify(generationText?.trim()) });
  const events = parseEventLines(eventsText, join(dir, RUN_FILES.events));
  return { dir, config, configYaml, events, checkpoints: await checkpointsOf(dir, config), report, generation };
}

/**
 * The events of events.jsonl in order. The last line may be cut short (the coordinator was killed while
 * writing it): it is left out; any other line that is not an event is bad input.
 */
export function parseEventLines(text: string, where: string): RunEvent[] {
  // Whether the text ends with a newline or not, the last piece is no complete line.
  const complete = text.split('\n').slice(0, -1);
  return complete.map((line, i) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new InputError(`${where}:${i + 1}`, `is not a JSON line: ${(error as Error).message}`);
    }
    return parseRunEvent(value, `${where}:${i + 1}`);
  });
}

async function checkpointsOf(dir: string, config: RunConfig): Promise<CheckpointOnDisk[]> {
  const store = new CheckpointStore(join(dir, RUN_FILES.checkpoints), config.checkpoint.keep);
  const found: CheckpointOnDisk[] = [];
  for (const name of await store.list()) {
    const match = /^p(\d{2})-s(\d{9})$/.exec(name)!;
    const manifest = await readText(join(store.dir, name, MANIFEST_FILE), 'read the checkpoint manifest');
    // A checkpoint being replaced has no manifest for a moment; it is not on disk yet.
    if (manifest === undefined) continue;
    let createdAt: unknown;
    try {
      createdAt = (JSON.parse(manifest) as { createdAt?: unknown }).createdAt;
    } catch (error) {
      throw new InputError(join(store.dir, name, MANIFEST_FILE), `is not valid JSON: ${(error as Error).message}`);
    }
    const savedAt = typeof createdAt === 'string' ? Date.parse(createdAt) : Number.NaN;
    found.push({ name, phaseIndex: Number(match[1]), step: Number(match[2]), savedAt });
  }
  return found;
}

/** The file's text, or undefined when it does not exist. */
async function readText(path: string, action: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileSystemError(path, action, error);
  }
}
