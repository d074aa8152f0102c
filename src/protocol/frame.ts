// Binary volume frame: "MSXV" | uint32 LE header length | JSON header (UTF-8) | single-volume NIfTI-1 (.nii bytes, or gzip of them).
import type { VolumeFrameHeader } from './messages.js';
import { ProtocolError, parseJson, parseVolumeHeader } from './validate.js';

export const FRAME_MAGIC = 0x5658534d; // "MSXV" read as uint32 LE
const MAX_HEADER_BYTES = 16 * 1024;

export function encodeVolumeFrame(header: VolumeFrameHeader, nifti: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(8 + json.length + nifti.length);
  out.writeUInt32LE(FRAME_MAGIC, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, 8);
  out.set(nifti, 8 + json.length);
  return out;
}

export interface DecodedFrame {
  header: VolumeFrameHeader;
  /** The NIfTI bytes (a view into the frame). */
  nifti: Uint8Array;
}

/** Splits a binary frame into its validated header and the NIfTI payload (not yet parsed). */
export function decodeVolumeFrame(buf: Uint8Array): DecodedFrame {
  if (buf.length < 8)
    throw new ProtocolError('bad-frame', `binary frame of ${buf.length} bytes is too short to be a volume frame.`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, true) !== FRAME_MAGIC)
    throw new ProtocolError(
      'bad-frame',
      'binary frame does not start with "MSXV"; it is not a protocol v1 volume frame.',
    );
  const n = dv.getUint32(4, true);
  if (n > MAX_HEADER_BYTES || 8 + n > buf.length)
    throw new ProtocolError(
      'bad-frame',
      `volume frame header length ${n} is larger than the frame or than ${MAX_HEADER_BYTES} bytes.`,
    );
  const text = Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8');
  const header = parseVolumeHeader(parseJson(text, 'volume frame header'));
  return { header, nifti: buf.subarray(8 + n) };
}

/** Peeks run and index from a frame whose body failed validation, so the error can name the volume. */
export function peekFrameIdentity(buf: Uint8Array): { session?: string; run?: string; index?: number } {
  try {
    const n = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32LE(4);
    const o = JSON.parse(
      Buffer.from(buf.buffer, buf.byteOffset + 8, Math.min(n, MAX_HEADER_BYTES)).toString('utf8'),
    ) as Record<string, unknown>;
    return {
      session: typeof o.session === 'string' ? o.session : undefined,
      run: typeof o.run === 'string' ? o.run : undefined,
      index: Number.isInteger(o.index) ? (o.index as number) : undefined,
    };
  } catch {
    return {};
  }
}
