import type { ChunkTag } from './chunk.js';
import type { CollectiveError } from './errors.js';

/**
 * The sending side of one ring link (this rank → its successor), over either transport: several
 * connections or streams, chunks spread over whichever has the least in flight.
 */
export interface OutboundLink {
  /** Whether one more chunk can go out now (some connection is below its in-flight limit). */
  readonly ready: boolean;
  /**
   * Sends a chunk; `payload` must stay unchanged until `written` is called (the bytes are then with the
   * kernel or the HTTP/2 session). `written` is not called when the link fails.
   */
  send(tag: ChunkTag, payload: Uint8Array, written: () => void): void;
  /** Where failures go (a connection dropped, the receiver refused a chunk): set by the current all-reduce. */
  onFailure(listener: (error: CollectiveError) => void): void;
  /** Ends the connections after what was sent is delivered (bounded wait), then frees them. */
  close(): Promise<void>;
  /** Cuts the connections at once. */
  destroy(): void;
}

/** The connection with the fewest bytes in flight, if it is below `limit`. */
export function leastLoaded<T extends { inFlightBytes: number }>(connections: readonly T[], limit: number): T | undefined {
  let best: T | undefined;
  for (const connection of connections) if (best === undefined || connection.inFlightBytes < best.inFlightBytes) best = connection;
  return best !== undefined && best.inFlightBytes < limit ? best : undefined;
}
