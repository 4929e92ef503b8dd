import type { Logger } from '../shared/logging.js';
import type { HeartbeatRegistration, HeartbeatSource, HeartbeatsFactory } from './heartbeats.js';
import { type HeartbeatNews, readHeartbeat } from './interrupts.js';

/**
 * The agent's side of its heartbeats: it keeps the source told of the registration and generation, reads
 * the replies into news (interrupts.ts, readHeartbeat) for the generation the worker is in, and logs the
 * beats that fail. A crash of the source is kept as `failure` and rejects `crashed`, which the agent races
 * its long waits against: a worker that can no longer prove it is alive fails instead of going on in silence.
 */
export class HeartbeatWatch {
  /** What the heartbeats said since the worker entered its generation (the first news counts). */
  private heard: HeartbeatNews | undefined;
  private generation = 0;
  private source: HeartbeatSource | undefined;
  private crash: Error | undefined;
  private rejectCrashed!: (error: Error) => void;
  /** Rejects once the heartbeat source crashes; never resolves. */
  readonly crashed = new Promise<never>((_, reject) => (this.rejectCrashed = reject));

  /**
   * `breakOff`: called when the heartbeats say the worker's generation is over for it (news, a coordinator
   * that no longer knows the worker, or their own crash): the agent frees a collective that may wait forever.
   */
  constructor(
    private readonly factory: HeartbeatsFactory,
    private readonly logger: Logger,
    private readonly breakOff: () => void,
  ) {
    // The crash may come while nothing races against it: `failure` still tells.
    this.crashed.catch(() => undefined);
  }

  /** Starts the source ahead of the registration, so that it is ready to beat once there is one. */
  start(): void {
    this.source = this.factory((beat) => {
      if (beat.kind === 'crashed') {
        this.crash ??= new Error(beat.message);
        this.rejectCrashed(this.crash);
        this.breakOff();
      } else if (beat.kind === 'failed') {
        this.logger.warn({ event: 'heartbeat.failed', error: beat.message, reason: beat.reason }, 'heartbeat failed');
        // Dropped for silence (a pause, a cut link), so its credential no longer counts: its peers have gone on without it.
        const forgotten = beat.reason === 'unknown-worker' || beat.reason === 'unauthenticated';
        if (forgotten && this.generation > 0) this.breakOff();
      } else if (!this.heard) {
        this.heard = readHeartbeat(beat.reply, this.generation);
        if (this.heard) this.breakOff();
      }
    });
  }

  get news(): HeartbeatNews | undefined {
    return this.heard;
  }

  /** Why the heartbeats stopped for good, once they have. */
  get failure(): Error | undefined {
    return this.crash;
  }

  /** A (new) registration: beat for it, outside any generation. */
  registered(registration: HeartbeatRegistration): void {
    this.generation = 0;
    this.heard = undefined;
    this.source?.beatFor(registration);
  }

  /** The worker joined `generation`: news from before it no longer applies. */
  entered(generation: number): void {
    this.generation = generation;
    this.heard = undefined;
    this.source?.enterGeneration(generation);
  }

  async close(): Promise<void> {
    await this.source?.close();
  }
}
