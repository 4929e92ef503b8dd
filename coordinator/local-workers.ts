import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../shared/logging.js';

/**
 * The embedded launcher's workers: N `autoprune worker` processes on this machine, talking to the
 * coordinator and to each other on loopback. The launcher watches them: a worker that exits before the
 * run is over is reported through `onLost` and replaced by a fresh process under a new id (worker-N, N
 * counting on), which joins the run's next generation; past `maxRestarts` replacements it gives up
 * instead (`onGiveUp`), naming the worker, how it exited and the limit. What it does about each exit is
 * the pure decision `onWorkerExit`.
 */

/** The exit status of `autoprune worker` fenced out of a run that goes on without it: not a crash, not replaced. */
export const FENCED_OUT_EXIT_STATUS = 3;

export interface LocalWorkersOptions {
  readonly count: number;
  readonly coordinator: string;
  readonly joinToken: string;
  /** Replacements started over the whole run before the launcher gives up. */
  readonly maxRestarts: number;
  /** Extra environment for the workers (log level, TLS paths...). */
  readonly env?: NodeJS.ProcessEnv;
  readonly logger: Logger;
  /** Whether the run is over: a worker that exits then has nothing left to do. */
  readonly runOver: () => boolean;
  /** A worker's process exited while the run goes on: it is gone for good (`how`: on which signal, with which status). */
  readonly onLost: (workerId: string, how: string) => void;
  /** No replacement is left: the run cannot go on as launched. */
  readonly onGiveUp: (reason: string) => void;
}

/** How a worker process ended, and where the run and the launcher stand. */
export interface WorkerExit {
  readonly workerId: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The run is over, or the launcher stops its workers: exits are expected. */
  readonly ending: boolean;
  /** Replacements started so far. */
  readonly restarts: number;
  readonly maxRestarts: number;
}

export type ExitDecision =
  /** Nothing to do: the run is over, or the worker finished it. */
  | { readonly action: 'none' }
  /** Fenced out of a run that goes on: it leaves, and no replacement would be let in either. */
  | { readonly action: 'leave'; readonly how: string }
  | { readonly action: 'replace'; readonly how: string }
  | { readonly action: 'give-up'; readonly how: string; readonly reason: string };

export function onWorkerExit(exit: WorkerExit): ExitDecision {
  if (exit.ending || exit.code === 0) return { action: 'none' };
  const how = exit.signal ? `on ${exit.signal}` : `with status ${exit.code}`;
  if (exit.code === FENCED_OUT_EXIT_STATUS) return { action: 'leave', how: `${how} (fenced out)` };
  if (exit.restarts < exit.maxRestarts) return { action: 'replace', how };
  const used = exit.maxRestarts === 0 ? 'no replacements allowed' : `all ${exit.maxRestarts} replacements used`;
  return { action: 'give-up', how, reason: `worker ${exit.workerId} exited ${how}, and --max-restarts is ${exit.maxRestarts} (${used})` };
}

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export class LocalWorkers {
  private readonly running = new Map<string, ChildProcess>();
  private started = 0;
  private restarts = 0;
  private stopping = false;

  constructor(private readonly options: LocalWorkersOptions) {
    for (let i = 0; i < options.count; i++) this.spawn();
  }

  /** Stops workers still running: SIGTERM, then SIGKILL after `graceMs`. None is replaced from now on. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.running.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private spawn(): string {
    const { options } = this;
    const id = `worker-${this.started++}`;
    const child = spawn(
      process.execPath,
      [CLI, 'worker', '--coordinator', options.coordinator, '--id', id, '--listen', '127.0.0.1:0', '--data-listen', '127.0.0.1:0', '--advertise', '127.0.0.1'],
      // The join token travels in the environment, not on the command line where `ps` shows it. The IPC
      // channel carries nothing: its closing tells the worker that this launcher is gone (SIGKILL included).
      { env: { ...process.env, ...options.env, AUTOPRUNE_JOIN_TOKEN: options.joinToken }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    this.running.set(id, child);
    child.on('exit', (code, signal) => this.exited(id, code, signal));
    options.logger.debug({ event: 'worker.spawned', workerId: id, pid: child.pid }, `started ${id}`);
    return id;
  }

  private exited(workerId: string, code: number | null, signal: NodeJS.Signals | null): void {
    this.running.delete(workerId);
    const { options } = this;
    const ending = this.stopping || options.runOver();
    const decision = onWorkerExit({ workerId, code, signal, ending, restarts: this.restarts, maxRestarts: options.maxRestarts });
    if (decision.action === 'none') return;
    // The coordinator hears of it at once, rather than after the heartbeat timeout.
    options.onLost(workerId, `its process exited ${decision.how}`);
    if (decision.action === 'give-up') {
      options.logger.error({ event: 'worker.restarts-exhausted', workerId, code, signal, maxRestarts: options.maxRestarts }, decision.reason);
      options.onGiveUp(decision.reason);
    } else if (decision.action === 'replace') {
      this.restarts++;
      const replacement = this.spawn();
      options.logger.warn(
        { event: 'worker.replaced', workerId, replacement, code, signal, restart: this.restarts, maxRestarts: options.maxRestarts },
        `${workerId} exited ${decision.how}; ${replacement} takes its place (replacement ${this.restarts} of at most ${options.maxRestarts})`,
      );
    }
  }
}
