/**
 * Undecoded RGB pixels as one record of the prepared cache's `raw` format: "APRW", width and height as
 * little-endian uint16, then the rows of 3-byte pixels. Several times the size of a JPEG, but cropping and
 * resizing it is all the work left, with no decoder at all.
 */

const MAGIC = [0x41, 0x50, 0x52, 0x57];
const HEADER_BYTES = 8;
const CHANNELS = 3;

export function encodeRawImage(pixels: Uint8Array, width: number, height: number): Buffer {
  if (pixels.length !== width * height * CHANNELS || width > 0xffff || height > 0xffff) {
    throw new RangeError(`${pixels.length} bytes is not a ${width}x${height} RGB image of at most 65535 pixels a side`);
  }
  const record = Buffer.allocUnsafe(HEADER_BYTES + pixels.length);
  record.set(MAGIC, 0);
  record.writeUInt16LE(width, 4);
  record.writeUInt16LE(height, 6);
  record.set(pixels, HEADER_BYTES);
  return record;
}

export function isRawImage(bytes: Uint8Array): boolean {
  return bytes.length >= HEADER_BYTES && MAGIC.every((b, i) => bytes[i] === b);
}

/** The size a raw record declares; undefined when it is not one or its length disagrees. */
export function rawImageSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (!isRawImage(bytes)) return undefined;
  const width = bytes[4]! | (bytes[5]! << 8);
  const height = bytes[6]! | (bytes[7]! << 8);
  return width > 0 && height > 0 && bytes.length === HEADER_BYTES + width * height * CHANNELS ? { width, height } : undefined;
}

/** The pixels of a raw record (a view, not a copy). */
export function rawPixels(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(HEADER_BYTES);
}
