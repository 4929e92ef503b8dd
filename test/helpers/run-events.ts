import type { EventSubscription } from '../../shared/events/bus.js';
import { formatRunEvent } from '../../shared/events/format.js';
import { connectNatsEventSource, type NatsEventSource } from '../../shared/events/nats-bus.js';
import type { RunEvent, RunEventData, RunEventName } from '../../shared/events/types.js';
import { type CliProcess, DEFAULT_WAIT_MS } from './cli.js';

/** How long events may still be arriving after their publisher exited. */
const PUBLISHER_GRACE_MS = 2000;

/**
 * A run's events as its coordinator publishes them on NATS (`--nats URL`), followed from before the run
 * starts so that none is missed: what integration tests wait on to act at a moment of the run.
 */
export class RunEvents {
  /** Every event received so far, in publishing order. */
  readonly received: RunEvent[] = [];
  private readonly listeners = new Set<() => void>();
  private publisher: CliProcess | undefined;
  private publisherGone = false;
  private ended = false;

  private constructor(
    private readonly source: NatsEventSource,
    private readonly subscription: EventSubscription,
    readonly runId: string,
  ) {
    void this.collect();
  }

  /** Subscribes to the run's events; call it before starting the process that publishes them. */
  static async follow(natsUrl: string, runId: string): Promise<RunEvents> {
    const source = await connectNatsEventSource({ url: natsUrl, name: `autoprune-test-${runId}` });
    return new RunEvents(source, await source.subscribe(runId), runId);
  }

  /**
   * Names the process that publishes the events: once it has exited (and what it sent just before has
   * had time to arrive), waits for events that have not come fail at once instead of at their timeout.
   */
  publishedBy(publisher: CliProcess): void {
    this.publisher = publisher;
    this.publisherGone = false;
    void publisher.exit.then(async () => {
      await new Promise((resolve) => setTimeout(resolve, PUBLISHER_GRACE_MS));
      if (this.publisher !== publisher) return;
      this.publisherGone = true;
      this.notify();
    });
  }

  /** The events of one kind so far. */
  all<E extends RunEventName>(event: E): RunEvent<E>[] {
    return this.received.filter((e) => e.event === event) as RunEvent<E>[];
  }

  /**
   * The first event of this kind (received before or after the call) whose data `match` accepts. Fails
   * when the run ends (run.finished, run.failed) or its publisher exits first, or after `timeoutMs`.
   */
  waitFor<E extends RunEventName>(event: E, match: (data: RunEventData<E>) => boolean = () => true, timeoutMs = DEFAULT_WAIT_MS): Promise<RunEvent<E>> {
    const what = `a ${event} event${match.length > 0 ? ` matching ${match.toString()}` : ''}`;
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        outcome();
      };
      const listener = () => {
        try {
          const found = this.all(event).find((e) => match(e.data));
          const end = this.received.find((e) => e.event === 'run.finished' || e.event === 'run.failed');
          if (found) settle(() => resolve(found));
          else if (end) settle(() => reject(this.failure(`run ${this.runId} ended (${formatRunEvent(end)}) without ${what}`)));
          else if (this.publisherGone) settle(() => reject(this.failure(`${this.publisher!.command} exited without publishing ${what}`)));
          else if (this.ended) settle(() => reject(this.failure(`the subscription to run ${this.runId} ended without ${what}`)));
        } catch (error) {
          settle(() => reject(error));
        }
      };
      const timer = setTimeout(() => settle(() => reject(this.failure(`no ${what} within ${timeoutMs / 1000} s`))), timeoutMs);
      this.listeners.add(listener);
      listener();
    });
  }

  async close(): Promise<void> {
    await this.subscription.close();
    await this.source.close();
  }

  private async collect(): Promise<void> {
    try {
      for await (const event of this.subscription) {
        this.received.push(event);
        this.notify();
      }
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** An error with the events seen so far and the publisher's last output. */
  private failure(message: string): Error {
    const seen = this.received.slice(-20).map(formatRunEvent).join('\n') || '(none)';
    const output = this.publisher ? `\n${this.publisher.command}, stderr ends:\n${this.publisher.tail(2000)}` : '';
    return new Error(`${message}\nlast events received:\n${seen}${output}`);
  }
}
