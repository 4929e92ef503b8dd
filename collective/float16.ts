import { float16BitsToFloat32 } from '../shared/safetensors.js';

/**
 * In-place float16 conversions for the fp16 wire encoding: the same IEEE rounding as
 * shared/safetensors.ts (nearest-even, overflow to infinity), without allocating per call, and with
 * decoding as one table lookup.
 */

const ALL_HALVES = new Uint16Array(65536).map((_, i) => i);
const HALF_TO_FLOAT: Float32Array = float16BitsToFloat32(ALL_HALVES);

/** 2^52: adding and subtracting it rounds a small non-negative double to an integer, ties to even. */
const ROUND_TO_INTEGER = 4503599627370496;

/** target[i] = float16 bits of source[i]. */
export function encodeFloat16(source: Float32Array, target: Uint16Array): void {
  const bits = new Uint32Array(source.buffer, source.byteOffset, source.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const magnitude = x & 0x7fffffff;
    let half: number;
    if (magnitude >= 0x38800000) {
      if (magnitude < 0x47800000) {
        // Normal half: rebias the exponent and round the mantissa to 10 bits, nearest-even; a carry
        // correctly bumps the exponent, up to infinity for values from 65520.
        half = (magnitude + 0x0fff + ((magnitude >>> 13) & 1) - 0x38000000) >>> 13;
      } else if (magnitude > 0x7f800000) {
        half = 0x7e00 | ((magnitude >>> 13) & 0x3ff); // NaN stays NaN
      } else {
        half = 0x7c00; // too large, or infinity
      }
    } else {
      // Subnormal half (or zero): units of 2^-24, rounded to nearest-even in double precision.
      const value = Math.abs(source[i]!) * 16777216;
      half = value + ROUND_TO_INTEGER - ROUND_TO_INTEGER;
    }
    target[i] = sign | half;
  }
}

/** target[offset + i] += value of bits[i]. */
export function addFloat16(target: Float32Array, offset: number, bits: Uint16Array): void {
  for (let i = 0; i < bits.length; i++) target[offset + i]! += HALF_TO_FLOAT[bits[i]!]!;
}

/** target[offset + i] = value of bits[i]. */
export function copyFloat16(target: Float32Array, offset: number, bits: Uint16Array): void {
  for (let i = 0; i < bits.length; i++) target[offset + i] = HALF_TO_FLOAT[bits[i]!]!;
}
