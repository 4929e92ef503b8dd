import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { status } from '@grpc/grpc-js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import { encodeCheckpointSnapshot } from '../../shared/checkpoint.js';
import { validateConfig } from '../../shared/config.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import type { RunEvent, RunEventName } from '../../shared/events/types.js';
import { createLogger } from '../../shared/logging.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import { RpcFailure } from '../../shared/rpc/failure.js';

/**
 * A coordinator on a fake clock, for unit tests: the test owns the time (`now`), calls `tick` itself and
 * drives every event through the coordinator's methods; no timer runs and no process starts.
 */

const TOKEN = 'coordinator-recovery-token-0123';

function config(distributed: Record<string, unknown> = {}) {
  return validateConfig(
    {
      model: { name: 'lenet300' },
      data: { dataset: 'mnist' },
      batchSize: 8,
      phases: [{ phase: 'dense', steps: 10, weights: { lr: 1e-3 } }],
      evaluation: { every: 4 },
      distributed,
    },
    'test',
  );
}

export class FakeClock {
  private time = 1000;
  readonly now = (): number => this.time;

  advance(ms: number): number {
    this.time += ms;
    return this.time;
  }
}

export interface RunOptions {
  readonly workers: readonly string[];
  readonly distributed?: Record<string, unknown>;
  /** The last generation a coordinator before this one recorded in the run directory. */
  readonly recordedGeneration?: number;
  /** Form the first generation (default true). */
  readonly rendezvous?: boolean;
  readonly watchHeartbeats?: boolean;
}

export async function startRun({ workers, distributed = {}, recordedGeneration, rendezvous = true, watchHeartbeats }: RunOptions) {
  const clock = new FakeClock();
  const bus = new InProcessEventBus();
  const events: RunEvent[] = [];
  const subscription = await bus.subscribe('recovery');
  void (async () => {
    for await (const e of subscription) events.push(e);
  })();
  const runDirectory = await RunDirectory.create(join(mkdtempSync(join(tmpdir(), 'autoprune-recovery-')), 'run'), config(distributed));
  if (recordedGeneration !== undefined) await runDirectory.recordGeneration(recordedGeneration);
  const coordinator = await Coordinator.create({
    config: config(distributed),
    runDirectory,
    runId: 'recovery',
    joinToken: TOKEN,
    workers: workers.length,
    events: bus.publisher('recovery'),
    logger: createLogger({ name: 'test', level: 'silent' }),
    now: clock.now,
    watchHeartbeats,
  });
  /** Registers `workerId`, presenting `credential` (that of a live registration of the id, to replace it). */
  const register = (workerId: string, generation = 0, credential?: string) =>
    coordinator.register(
      {
        workerId,
        address: `127.0.0.1:${workerId.charCodeAt(0)}`,
        dataAddress: '127.0.0.1:3',
        capabilities: null,
        joinToken: TOKEN,
        configHash: '',
        protocolVersion: PROTOCOL_VERSION,
        generation,
      },
      credential,
    );
  if (rendezvous) {
    for (const id of workers) register(id);
    await Promise.all(workers.map((id) => coordinator.rendezvous(id, 0, 'cpu')));
  }
  /** Moves the clock on by `ms`, with `alive` heartbeating just before, then ticks. */
  const tickAfter = (ms: number, alive: readonly string[]) => {
    const now = clock.advance(ms);
    for (const id of alive) coordinator.heartbeat(id);
    coordinator.tick(now);
  };
  /** The events published so far of one kind (delivery to the subscription takes a turn of the event loop). */
  const published = async <E extends RunEventName>(name: E): Promise<RunEvent<E>[]> => {
    await new Promise((resolve) => setImmediate(resolve));
    return events.filter((e) => e.event === name) as unknown as RunEvent<E>[];
  };
  return { coordinator, clock, runDirectory, register, tickAfter, published };
}

/** A refusal with this status and reason. */
export const refusal = (code: status, reason: string) => (error: unknown) => error instanceof RpcFailure && error.code === code && error.reason === reason;

/** A state snapshot at `step` of phase 0, as a survivor offers it. */
export function snapshot(configHash: string, step: number): Buffer {
  return encodeCheckpointSnapshot({
    position: { phase: 'dense', phaseIndex: 0, step, epoch: 0, configHash, model: 'lenet300' },
    parameters: new Map([['fc1.kernel', { dtype: 'F32', shape: [2], data: new Float32Array([step, -step]) }]]),
    optimizers: new Map(),
  });
}
