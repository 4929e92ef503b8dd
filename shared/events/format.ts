import type { RunEvent } from './types.js';

/** One line for people, e.g. `#12 10:04:05 step prune [2] 300/2000 loss 0.1234 acc 97.5% kept 8.10% 5120 img/s 4 workers`. */
export function formatRunEvent(event: RunEvent): string {
  return `#${event.seq} ${event.time.slice(11, 19)} ${event.event} ${describe(event)}`;
}

function describe(event: RunEvent): string {
  switch (event.event) {
    case 'run.started': {
      const d = event.data;
      return `${d.model} on ${d.dataset}, ${d.workers} workers, config ${d.configHash.slice(0, 12)}`;
    }
    case 'worker.joined':
    case 'worker.left': {
      const d = event.data;
      return `${d.workerId} at ${d.address}, generation ${d.generation}${d.reason ? ` (${d.reason})` : ''}`;
    }
    case 'step': {
      const d = event.data;
      const aux = d.auxLoss === undefined ? '' : ` aux ${number(d.auxLoss, 4)}`;
      const compression = d.compression === undefined ? '' : ` (${number(d.compression, 1)}×)`;
      const wait = d.inputWaitSeconds ?? 0;
      const inputWait = wait >= 0.005 ? ` (input wait ${wait.toFixed(2)} s)` : '';
      return (
        `${d.phase} [${d.phaseIndex}] ${d.step}/${d.steps} loss ${number(d.loss, 4)}${aux} acc ${percent(d.accuracy)}` +
        ` kept ${percent(d.remaining, 2)}${compression} ${Math.round(d.imagesPerSecond)} img/s${inputWait} ${d.workers} workers`
      );
    }
    case 'eval':
      return `${event.data.phase} [${event.data.phaseIndex}] step ${event.data.step} test accuracy ${percent(event.data.testAccuracy, 2)}`;
    case 'phase': {
      const d = event.data;
      const seconds = d.seconds === undefined ? '' : ` in ${d.seconds.toFixed(1)} s`;
      const accuracy = d.testAccuracy === undefined ? '' : `, test accuracy ${percent(d.testAccuracy, 2)}`;
      return `${d.phase} [${d.phaseIndex}] ${d.status} (${d.steps} steps)${seconds}${accuracy}`;
    }
    case 'checkpoint.saved':
      return `${event.data.path} (${event.data.phase} step ${event.data.step})`;
    case 'run.finished': {
      const d = event.data;
      return `compression ${number(d.compression, 1)}×, test accuracy ${percent(d.testAccuracy, 2)}, ${d.seconds.toFixed(1)} s`;
    }
    case 'run.failed':
      return event.data.reason;
    case 'failure.detected':
      return `${event.data.workerId || 'a worker'} lost (${event.data.how}), noticed after ${event.data.detectSeconds.toFixed(1)} s`;
    case 'recovery.completed': {
      const d = event.data;
      return `generation ${d.generation} with ${d.workers} workers from phase ${d.from.phaseIndex} step ${d.from.step}, ${d.stepsRedone} steps redone, recovered in ${d.recoverSeconds.toFixed(1)} s`;
    }
    default:
      return unreachable(event);
  }
}

/** Makes a new event without a case above a compile error. */
function unreachable(event: never): string {
  return JSON.stringify((event as RunEvent).data);
}

/** null stands for a value that was NaN or infinite when published. */
function number(value: number | null, digits: number): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

function percent(fraction: number, digits = 1): string {
  return `${(100 * fraction).toFixed(digits)}%`;
}
