/**
 * The tag every chunk carries on both transports (the Chunk message of collective.proto, or a TCP frame
 * header): chunks are matched by tag on receipt, so their arrival order across streams does not matter.
 */

export type ChunkEncoding = 'float32' | 'float16';

export interface ChunkTag {
  readonly generation: number;
  /** All-reduce number within the generation. */
  readonly sequence: number;
  /** Training step (diagnostics, and a check that ranks are in step). */
  readonly step: number;
  readonly bucket: number;
  /** 0 .. N-2 reduce-scatter, N-1 .. 2N-3 all-gather. */
  readonly round: number;
  /** First element of the chunk within its bucket. */
  readonly offset: number;
  readonly elements: number;
  readonly encoding: ChunkEncoding;
}

/** Receives one chunk's payload in pieces as it arrives (a TCP frame straddles reads; a gRPC message is one piece). */
export interface ChunkSink {
  write(piece: Uint8Array): void;
  end(): void;
  /** Where up to `bytes` more payload bytes may be read straight into, for sinks that copy bytes verbatim. */
  directTarget?(bytes: number): Uint8Array | undefined;
  /** `bytes` were read into the memory directTarget gave. */
  wroteDirectly?(bytes: number): void;
}

export function bytesPerElement(encoding: ChunkEncoding): number {
  return encoding === 'float16' ? 2 : 4;
}

export function describeTag(tag: Pick<ChunkTag, 'generation' | 'sequence' | 'step' | 'bucket' | 'round'>): string {
  return `generation ${tag.generation}, sequence ${tag.sequence}, step ${tag.step}, bucket ${tag.bucket}, round ${tag.round}`;
}
