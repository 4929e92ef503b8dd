import type { Logger } from '../shared/logging.js';

/**
 * SIGTERM and SIGINT for the commands that run: the first one starts a graceful stop (a final checkpoint,
 * then exit 143 or 130); a second one, or the grace period running out, ends the process at once with
 * that status. Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds (30 s by default) before
 * SIGKILL, so the default grace period stays well inside it.
 */

export type StopSignal = 'SIGTERM' | 'SIGINT';

/** 128 + the signal's number, as a shell reports a process ended by it. */
export const INTERRUPTED_EXIT_STATUS: Readonly<Record<StopSignal, number>> = { SIGINT: 130, SIGTERM: 143 };

/** Default for --grace-period: time to write the final checkpoint, well inside Kubernetes' 30 s. */
export const DEFAULT_GRACE_PERIOD = '20s';

/** The command stopped on a signal after its final checkpoint: the CLI exits 130 (SIGINT) or 143 (SIGTERM). */
export class Interrupted extends Error {
  constructor(
    readonly signal: StopSignal,
    reason: string,
    readonly runDirectory: string | undefined,
  ) {
    super(reason.includes(signal) ? `interrupted (${reason})` : `interrupted by ${signal} (${reason})`);
    this.name = 'Interrupted';
  }
}

export interface StopSignals {
  /** The first stop signal received, if any. */
  readonly received: StopSignal | undefined;
  /** Stops listening (the command is done). */
  dispose(): void;
}

/**
 * Calls `onStop` on the first SIGTERM or SIGINT. From then on, at most `graceMs` pass before the process
 * exits with the signal's status whatever it is doing, and a second signal exits at once.
 */
export function handleStopSignals(graceMs: number, logger: Logger, onStop: (signal: StopSignal) => void): StopSignals {
  let received: StopSignal | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const exitNow = (signal: StopSignal, why: string) => {
    logger.error({ event: 'process.exit', signal, why }, `exiting at once: ${why}`);
    process.exit(INTERRUPTED_EXIT_STATUS[signal]);
  };
  const listener = (signal: StopSignal) => {
    if (received !== undefined) return exitNow(received, `a second ${signal} came during the graceful stop`);
    received = signal;
    logger.warn({ event: 'process.stopping', signal, graceMs }, `${signal}: stopping within ${graceMs / 1000} s`);
    deadline = setTimeout(() => exitNow(signal, `the grace period (${graceMs / 1000} s) ran out`), graceMs);
    deadline.unref();
    onStop(signal);
  };
  process.on('SIGTERM', listener);
  process.on('SIGINT', listener);
  return {
    get received() {
      return received;
    },
    dispose: () => {
      process.off('SIGTERM', listener);
      process.off('SIGINT', listener);
      if (deadline) clearTimeout(deadline);
    },
  };
}
