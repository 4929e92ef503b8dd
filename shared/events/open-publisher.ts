import type { Logger } from '../logging.js';
import type { EventPublisher } from './bus.js';
import type { InProcessEventBus } from './in-process-bus.js';
import { connectNatsEvents } from './nats-bus.js';

export type EventPublisherOptions =
  | { readonly runId: string; readonly natsUrl: string; readonly name?: string; readonly logger?: Logger }
  /** No NATS URL: the in-process bus that this process's subscribers (a progress display, tests) follow. */
  | { readonly runId: string; readonly bus: InProcessEventBus };

/** The run's publisher: on NATS when the run was given a URL, otherwise on the in-process bus. */
export async function openEventPublisher(options: EventPublisherOptions): Promise<EventPublisher> {
  if ('bus' in options) return options.bus.publisher(options.runId);
  return connectNatsEvents({ url: options.natsUrl, runId: options.runId, name: options.name, logger: options.logger });
}
