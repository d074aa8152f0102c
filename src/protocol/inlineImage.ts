// The optional inline stimulus image of an `event` message: base64 of a PNG, JPEG or WebP file, at most 512 KiB and
// 4096 pixels a side. Checked here once, from the bytes alone (no decoder runs on untrusted input at entry): the
// format from its signature, the size from its header, so nothing downstream decodes a bomb.
import type { StimulusImage } from '../core/types.js';
import { ProtocolError } from './errors.js';

export const MAX_INLINE_IMAGE_BYTES = 512 * 1024;
export const MAX_INLINE_IMAGE_SIDE = 4096;
const MAX_BASE64_CHARS = Math.ceil(MAX_INLINE_IMAGE_BYTES / 3) * 4;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const bad = (why: string) => new ProtocolError('bad-image', why);

/** Base64 text of a stimulus image → its checked bytes; throws ProtocolError('bad-image') with one sentence. */
export function decodeInlineImage(v: unknown): StimulusImage {
  if (typeof v !== 'string' || v.length === 0) throw bad('"imageData" must be a non-empty base64 string.');
  if (v.length > MAX_BASE64_CHARS) {
    throw bad(
      `the inline image is about ${Math.round((v.length * 3) / 4 / 1024)} KiB, above the ${MAX_INLINE_IMAGE_BYTES / 1024} KiB limit; send a smaller PNG, JPEG or WebP.`,
    );
  }
  if (v.length % 4 !== 0 || !BASE64.test(v)) throw bad('"imageData" is not valid base64 (standard alphabet, padded).');
  const buf = Buffer.from(v, 'base64');
  return inspectImage(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

export function encodeInlineImage(img: StimulusImage): string {
  return Buffer.from(img.bytes.buffer, img.bytes.byteOffset, img.bytes.byteLength).toString('base64');
}

/** Image file bytes → format and size from the header; throws ProtocolError('bad-image') when not a usable image. */
export function inspectImage(bytes: Uint8Array): StimulusImage {
  if (bytes.length > MAX_INLINE_IMAGE_BYTES)
    throw bad(
      `the image is ${Math.round(bytes.length / 1024)} KiB, above the ${MAX_INLINE_IMAGE_BYTES / 1024} KiB limit; send a smaller PNG, JPEG or WebP.`,
    );
  const size = pngSize(bytes) ?? jpegSize(bytes) ?? webpSize(bytes);
  if (!size) throw bad('the inline image is not a PNG, JPEG or WebP file (unknown signature or unreadable header).');
  const [format, width, height] = size;
  if (!(width > 0 && height > 0) || width > MAX_INLINE_IMAGE_SIDE || height > MAX_INLINE_IMAGE_SIDE) {
    throw bad(
      `the inline ${format} image is ${width}×${height} pixels; each side must be 1..${MAX_INLINE_IMAGE_SIDE}.`,
    );
  }
  return { format, bytes, width, height };
}

type Size = [StimulusImage['format'], number, number];

function pngSize(b: Uint8Array): Size | undefined {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length < 24 || sig.some((x, i) => b[i] !== x)) return undefined;
  const dv = view(b);
  if (ascii(b, 12, 4) !== 'IHDR') return undefined;
  return ['png', dv.getUint32(16), dv.getUint32(20)];
}

function jpegSize(b: Uint8Array): Size | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[2] !== 0xff) return undefined;
  const dv = view(b);
  // Walk the marker segments up to the first start-of-frame, which holds the size.
  for (let o = 2; o + 4 <= b.length; ) {
    if (b[o] !== 0xff) return undefined;
    const m = b[o + 1];
    if (m === 0xff) {
      o++;
      continue;
    } // fill byte
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      o += 2;
      continue;
    } // no length
    if (m === 0xd9 || m === 0xda) return undefined; // end of image / scan data before any frame header
    const len = dv.getUint16(o + 2);
    if (len < 2) return undefined;
    const sof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
    if (sof) return o + 9 <= b.length ? ['jpeg', dv.getUint16(o + 7), dv.getUint16(o + 5)] : undefined;
    o += 2 + len;
  }
  return undefined;
}

function webpSize(b: Uint8Array): Size | undefined {
  if (b.length < 32 || ascii(b, 0, 4) !== 'RIFF' || ascii(b, 8, 4) !== 'WEBP') return undefined;
  const dv = view(b);
  switch (ascii(b, 12, 4)) {
    case 'VP8 ': // lossy: key frame start code, then 14-bit sizes
      if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined;
      return ['webp', dv.getUint16(26, true) & 0x3fff, dv.getUint16(28, true) & 0x3fff];
    case 'VP8L': {
      // lossless: signature byte, then 14-bit sizes minus one
      if (b[20] !== 0x2f) return undefined;
      const bits = dv.getUint32(21, true);
      return ['webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
    }
    case 'VP8X': // extended: 24-bit canvas sizes minus one
      return ['webp', (dv.getUint32(24, true) & 0xffffff) + 1, (dv.getUint32(27, true) & 0xffffff) + 1];
    default:
      return undefined;
  }
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const ascii = (b: Uint8Array, o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
