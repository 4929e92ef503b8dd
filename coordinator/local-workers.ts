import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../shared/logging.js';

/**
 * The embedded launcher's workers: N `autoprune worker` processes on this machine, talking to the
 * coordinator and to each other on loopback. The launcher watches them: a worker that exits before the
 * run is over is reported through `onExit`.
 */

export interface LocalWorkersOptions {
  readonly count: number;
  readonly coordinator: string;
  readonly joinToken: string;
  /** Extra environment for the workers (log level, TLS paths...). */
  readonly env?: NodeJS.ProcessEnv;
  readonly logger: Logger;
  readonly onExit: (workerId: string, code: number | null, signal: NodeJS.Signals | null) => void;
}

export interface LocalWorker {
  readonly id: string;
  readonly process: ChildProcess;
}

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export function spawnLocalWorkers(options: LocalWorkersOptions): LocalWorker[] {
  return Array.from({ length: options.count }, (_, index) => {
    const id = `worker-${index}`;
    const child = spawn(
      process.execPath,
      [CLI, 'worker', '--coordinator', options.coordinator, '--id', id, '--listen', '127.0.0.1:0', '--data-listen', '127.0.0.1:0', '--advertise', '127.0.0.1'],
      // The join token travels in the environment, not on the command line where `ps` shows it.
      { env: { ...process.env, ...options.env, AUTOPRUNE_JOIN_TOKEN: options.joinToken }, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    child.on('exit', (code, signal) => options.onExit(id, code, signal));
    options.logger.debug({ event: 'worker.spawned', workerId: id, pid: child.pid }, `started ${id}`);
    return { id, process: child };
  });
}

/** Stops workers still running: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopLocalWorkers(workers: readonly LocalWorker[], graceMs = 3000): Promise<void> {
  await Promise.all(
    workers.map(async ({ process: child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }),
  );
}
