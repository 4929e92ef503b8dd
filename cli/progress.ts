import cliProgress from 'cli-progress';
import type { StepProgress } from '../engine/phase-runner.js';
import type { EventSubscription } from '../shared/events/bus.js';
import { createLogger, type LogContext, type Logger } from '../shared/logging.js';

/** The CLI's logger: on a terminal only warnings (unless AUTOPRUNE_LOG_LEVEL says otherwise), so that the progress bar stays whole. */
export function interactiveLogger(name: string, context?: LogContext): { logger: Logger; interactive: boolean } {
  const interactive = process.stderr.isTTY === true;
  const level = interactive ? { level: process.env.AUTOPRUNE_LOG_LEVEL ?? 'warn' } : {};
  return { logger: createLogger({ name, ...level, ...(context ? { context } : {}) }), interactive };
}

/** Where a run's progress shows. */
export interface ProgressDisplay {
  onProgress(progress: StepProgress): void;
  onEvaluation(evaluation: { readonly phase: string; readonly step: number; readonly testAccuracy: number }): void;
  /** Clears the bar, if any, before anything else is printed. */
  stop(): void;
}

/** Feeds a run's step and eval events to the progress bar or log lines, until the run finishes or fails. */
export async function showProgress(subscription: EventSubscription, display: ProgressDisplay): Promise<void> {
  for await (const event of subscription) {
    if (event.event === 'step') {
      const d = event.data;
      display.onProgress({
        ...d,
        loss: d.loss ?? Number.NaN,
        auxLoss: d.auxLoss ?? undefined,
        inputWaitSeconds: d.inputWaitSeconds ?? 0,
        exchangeSeconds: d.allReduceSeconds ?? 0,
      });
    } else if (event.event === 'eval') {
      const { phase, step, testAccuracy } = event.data;
      display.onEvaluation({ phase, step, testAccuracy });
    }
    if (event.event === 'run.finished' || event.event === 'run.failed') return;
  }
}

/**
 * Progress of a run: a bar on a terminal (phase, step, loss, accuracy, sparsity, ETA), JSON log lines
 * otherwise, so that logs collected from a cluster stay machine-readable.
 */
export function progressReporter(logger: Logger, interactive: boolean): ProgressDisplay {
  if (!interactive) {
    return {
      onProgress: (p) => logger.info({ event: 'step', ...p }, `${p.phase} ${p.step}/${p.steps}`),
      onEvaluation: (e) => logger.info({ event: 'eval', ...e }, `${e.phase} test accuracy ${(100 * e.testAccuracy).toFixed(2)}%`),
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format:
        '{phase} |{bar}| {value}/{total} steps | loss {loss} | acc {accuracy} | kept {kept} | {speed} img/s | input wait {inputWait} s | ETA {eta_formatted}',
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let currentPhase = -1;
  const fields = (p: StepProgress) => ({
    phase: p.phase.padEnd(8),
    loss: p.loss.toFixed(4),
    accuracy: `${(100 * p.accuracy).toFixed(1)}%`,
    kept: `${(100 * p.remaining).toFixed(2)}%`,
    speed: Math.round(p.imagesPerSecond),
    inputWait: p.inputWaitSeconds.toFixed(2),
  });
  return {
    onProgress: (p) => {
      if (p.phaseIndex !== currentPhase) {
        if (currentPhase >= 0) bar.stop();
        currentPhase = p.phaseIndex;
        bar.start(p.steps, p.step, fields(p));
      } else {
        bar.update(p.step, fields(p));
      }
    },
    onEvaluation: (e) => {
      process.stderr.write(`\n${e.phase} step ${e.step}: test accuracy ${(100 * e.testAccuracy).toFixed(2)}%\n`);
    },
    stop: () => bar.stop(),
  };
}
