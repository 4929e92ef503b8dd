import { createHmac } from 'node:crypto';
import type { ChunkEncoding, ChunkSink, ChunkTag } from './chunk.js';
import { RefusalError, type RefusalReason } from './errors.js';

/**
 * The bulk TCP channel's wire format, little-endian throughout. The receiving rank connects to its
 * predecessor's listener (Node reads into caller-chosen memory only on sockets it connects), presents
 * itself, and the predecessor proves it holds the same session key; then chunk frames flow from the
 * predecessor to the receiver.
 *
 *   hello (receiver → sender):  magic "APRB" u32 | version u16 | id length u16 | key length u16 | 0 u16 |
 *                               generation u64 | nonce (32) | worker id | session key
 *   reply (sender → receiver, receiver → sender to refuse):
 *                               kind u8 (1 accepted, 2 refused) | reason u8 | 0 u16 | body length u32 | body
 *                               body: accepted → HMAC-SHA256(session key, proof input), refused → message (UTF-8)
 *   chunk (sender → receiver):  payload bytes u32 | encoding u8 | 0 u8×3 | generation u64 | sequence u64 |
 *                               step u64 | offset u64 | bucket u32 | round u32 | elements u32 | 0 u32 | payload
 * The payload length comes first so that an oversized frame is refused before anything is read into memory.
 */

const HELLO_MAGIC = 0x42525041; // "APRB" read little-endian
const PROTOCOL_VERSION = 1;
export const NONCE_BYTES = 32;
const HELLO_FIXED_BYTES = 20 + NONCE_BYTES;
const MAX_HELLO_FIELD_BYTES = 1024;
export const CHUNK_HEADER_BYTES = 56;
const REPLY_FIXED_BYTES = 8;
const MAX_REPLY_BODY_BYTES = 4096;

const REASONS: readonly RefusalReason[] = [
  'unauthenticated',
  'stale-generation',
  'future-generation',
  'not-predecessor',
  'not-successor',
  'too-large',
  'protocol',
];
const ENCODINGS: readonly ChunkEncoding[] = ['float32', 'float16'];

function writeUint64(target: Buffer, value: number, at: number): void {
  target.writeUInt32LE(value % 0x100000000, at);
  target.writeUInt32LE(Math.floor(value / 0x100000000), at + 4);
}

function readUint64(source: Buffer, at: number): number {
  return source.readUInt32LE(at) + source.readUInt32LE(at + 4) * 0x100000000;
}

export interface Hello {
  readonly workerId: string;
  readonly generation: number;
  readonly sessionKey: Uint8Array;
  readonly nonce: Uint8Array;
}

export function encodeHello(hello: Hello): Buffer {
  const id = Buffer.from(hello.workerId, 'utf8');
  const frame = Buffer.alloc(HELLO_FIXED_BYTES + id.length + hello.sessionKey.length);
  frame.writeUInt32LE(HELLO_MAGIC, 0);
  frame.writeUInt16LE(PROTOCOL_VERSION, 4);
  frame.writeUInt16LE(id.length, 6);
  frame.writeUInt16LE(hello.sessionKey.length, 8);
  writeUint64(frame, hello.generation, 12);
  frame.set(hello.nonce, 20);
  id.copy(frame, HELLO_FIXED_BYTES);
  frame.set(hello.sessionKey, HELLO_FIXED_BYTES + id.length);
  return frame;
}

/** What the sender signs to prove it holds the session key: bound to this connection's nonce. */
export function senderProof(sessionKey: Uint8Array, generation: number, senderId: string, receiverId: string, nonce: Uint8Array): Buffer {
  return createHmac('sha256', sessionKey).update(`autoprune bulk v${PROTOCOL_VERSION} sender ${generation} ${senderId} ${receiverId}\n`).update(nonce).digest();
}

export function encodeAccepted(proof: Buffer): Buffer {
  return encodeReply(1, 0, proof);
}

export function encodeRefusal(refusal: RefusalError): Buffer {
  return encodeReply(2, REASONS.indexOf(refusal.reason), Buffer.from(refusal.message, 'utf8').subarray(0, MAX_REPLY_BODY_BYTES));
}

function encodeReply(kind: number, reason: number, body: Buffer): Buffer {
  const frame = Buffer.alloc(REPLY_FIXED_BYTES + body.length);
  frame.writeUInt8(kind, 0);
  frame.writeUInt8(reason, 1);
  frame.writeUInt32LE(body.length, 4);
  body.copy(frame, REPLY_FIXED_BYTES);
  return frame;
}

export function encodeChunkHeader(tag: ChunkTag, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(CHUNK_HEADER_BYTES).fill(0);
  header.writeUInt32LE(payloadBytes, 0);
  header.writeUInt8(ENCODINGS.indexOf(tag.encoding), 4);
  writeUint64(header, tag.generation, 8);
  writeUint64(header, tag.sequence, 16);
  writeUint64(header, tag.step, 24);
  writeUint64(header, tag.offset, 32);
  header.writeUInt32LE(tag.bucket, 40);
  header.writeUInt32LE(tag.round, 44);
  header.writeUInt32LE(tag.elements, 48);
  return header;
}

/** Collects a small message (hello, reply) that may straddle reads; gives it and the bytes after it once complete. */
class SmallMessage {
  private bytes: Buffer = Buffer.alloc(0);

  push(data: Buffer, length: (bytes: Buffer) => number | undefined): { message: Buffer; rest: Buffer } | undefined {
    // Copied: data may be a read buffer that is reused after this call.
    this.bytes = Buffer.concat([this.bytes, data]);
    const total = length(this.bytes);
    if (total === undefined || this.bytes.length < total) return undefined;
    const result = { message: this.bytes.subarray(0, total), rest: this.bytes.subarray(total) };
    this.bytes = Buffer.alloc(0);
    return result;
  }
}

/** Parses the hello on the sender's side; throws RefusalError('protocol') on anything malformed. */
export class HelloReader {
  private readonly collector = new SmallMessage();

  push(data: Buffer): { hello: Hello; rest: Buffer } | undefined {
    const done = this.collector.push(data, (bytes) => {
      if (bytes.length < HELLO_FIXED_BYTES) return undefined;
      if (bytes.readUInt32LE(0) !== HELLO_MAGIC) throw new RefusalError('protocol', 'not an autoprune bulk-channel hello');
      const version = bytes.readUInt16LE(4);
      if (version !== PROTOCOL_VERSION) throw new RefusalError('protocol', `bulk-channel protocol version ${version}; this worker speaks ${PROTOCOL_VERSION}`);
      const idBytes = bytes.readUInt16LE(6);
      const keyBytes = bytes.readUInt16LE(8);
      if (idBytes > MAX_HELLO_FIELD_BYTES || keyBytes > MAX_HELLO_FIELD_BYTES) throw new RefusalError('protocol', 'hello fields too long');
      return HELLO_FIXED_BYTES + idBytes + keyBytes;
    });
    if (done === undefined) return undefined;
    const { message } = done;
    const idEnd = HELLO_FIXED_BYTES + message.readUInt16LE(6);
    return {
      hello: {
        workerId: message.toString('utf8', HELLO_FIXED_BYTES, idEnd),
        generation: readUint64(message, 12),
        nonce: message.subarray(20, HELLO_FIXED_BYTES),
        sessionKey: message.subarray(idEnd),
      },
      rest: done.rest,
    };
  }
}

export type Reply = { readonly accepted: true; readonly proof: Buffer } | { readonly accepted: false; readonly refusal: RefusalError };

/** Parses replies: the sender's answer to a hello, or a refusal. */
export class ReplyReader {
  private readonly collector = new SmallMessage();

  push(data: Buffer): { reply: Reply; rest: Buffer } | undefined {
    const done = this.collector.push(data, (bytes) => {
      if (bytes.length < REPLY_FIXED_BYTES) return undefined;
      const length = bytes.readUInt32LE(4);
      if (length > MAX_REPLY_BODY_BYTES) throw new Error(`reply of ${length} bytes is too long`);
      return REPLY_FIXED_BYTES + length;
    });
    if (done === undefined) return undefined;
    const { message } = done;
    const kind = message.readUInt8(0);
    const body = message.subarray(REPLY_FIXED_BYTES);
    if (kind === 1) return { reply: { accepted: true, proof: body }, rest: done.rest };
    if (kind !== 2) throw new Error(`unknown reply kind ${kind}`);
    const reason = REASONS[message.readUInt8(1)] ?? 'protocol';
    return { reply: { accepted: false, refusal: new RefusalError(reason, body.toString('utf8')) }, rest: done.rest };
  }
}

/**
 * Parses chunk frames incrementally: headers are read in place (copied only when split between reads),
 * payload bytes go to the frame's sink piece by piece, so nothing is concatenated or buffered here. A
 * sink that copies bytes verbatim may offer its memory, so the next read lands there directly.
 * `begin` decides where a frame's payload lands (and may refuse it by throwing).
 */
export class FrameReader {
  private readonly header = Buffer.alloc(CHUNK_HEADER_BYTES);
  private headerFilled = 0;
  private sink: ChunkSink | undefined;
  private remaining = 0;

  constructor(
    private readonly maxPayloadBytes: number,
    private readonly begin: (tag: ChunkTag, payloadBytes: number) => ChunkSink,
  ) {}

  /** Memory the next read may go straight into (part of the current payload's destination), if any. */
  readTarget(): Uint8Array | undefined {
    return this.sink?.directTarget?.(this.remaining);
  }

  /** Bytes up to the end of the header or payload being read: reads that stop there let the next payload go straight to its destination. */
  bytesToBoundary(): number {
    return this.sink !== undefined ? this.remaining : CHUNK_HEADER_BYTES - this.headerFilled;
  }

  /** `bytes` of the current payload were read straight into readTarget(). */
  pushedDirectly(bytes: number): void {
    this.sink!.wroteDirectly!(bytes);
    this.remaining -= bytes;
    if (this.remaining === 0) this.finishFrame();
  }

  push(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      if (this.sink !== undefined) {
        const take = Math.min(this.remaining, data.length - at);
        this.sink.write(data.subarray(at, at + take));
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) this.finishFrame();
        continue;
      }
      if (this.headerFilled === 0 && data.length - at >= CHUNK_HEADER_BYTES) {
        this.startFrame(data, at);
        at += CHUNK_HEADER_BYTES;
        continue;
      }
      const take = Math.min(CHUNK_HEADER_BYTES - this.headerFilled, data.length - at);
      data.copy(this.header, this.headerFilled, at, at + take);
      this.headerFilled += take;
      at += take;
      if (this.headerFilled === CHUNK_HEADER_BYTES) {
        this.headerFilled = 0;
        this.startFrame(this.header, 0);
      }
    }
  }

  private startFrame(bytes: Buffer, at: number): void {
    const payloadBytes = bytes.readUInt32LE(at);
    if (payloadBytes > this.maxPayloadBytes) {
      throw new RefusalError('too-large', `frame of ${payloadBytes} bytes exceeds the limit of ${this.maxPayloadBytes} bytes`);
    }
    const encoding = ENCODINGS[bytes.readUInt8(at + 4)];
    if (encoding === undefined) throw new RefusalError('protocol', `unknown encoding ${bytes.readUInt8(at + 4)}`);
    const tag: ChunkTag = {
      generation: readUint64(bytes, at + 8),
      sequence: readUint64(bytes, at + 16),
      step: readUint64(bytes, at + 24),
      offset: readUint64(bytes, at + 32),
      bucket: bytes.readUInt32LE(at + 40),
      round: bytes.readUInt32LE(at + 44),
      elements: bytes.readUInt32LE(at + 48),
      encoding,
    };
    this.sink = this.begin(tag, payloadBytes);
    this.remaining = payloadBytes;
    if (payloadBytes === 0) this.finishFrame();
  }

  private finishFrame(): void {
    const sink = this.sink!;
    this.sink = undefined;
    sink.end();
  }
}
