// Minimal reader for NumPy .npy files holding little-endian float32/float64 or uint8 C-order arrays (bundle side data).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** The header of a C-order .npy in `buf`: dtype, shape and where the data starts. */
function npyHeader(buf: Buffer, path: string): { descr: string | undefined; shape: number[]; n: number; off: number } {
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path} is not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran-order arrays are not supported`);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  return {
    descr: /'descr':\s*'([^']+)'/.exec(header)?.[1],
    shape,
    n: shape.reduce((a, b) => a * b, 1),
    off: start + headerLen,
  };
}

export function readNpy(path: string): { data: Float32Array; shape: number[] } {
  const buf = readFileSync(path);
  const { descr, shape, n, off } = npyHeader(buf, path);
  const body = buf.subarray(off);
  if (descr === '<f4')
    return { data: new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + n * 4)), shape };
  if (descr === '<f8')
    return {
      data: Float32Array.from(new Float64Array(body.buffer.slice(body.byteOffset, body.byteOffset + n * 8))),
      shape,
    };
  throw new Error(`${path}: dtype ${descr} is not supported (need float32/float64)`);
}

/** A uint8 C-order .npy, gzip-compressed when the name ends in .gz (the bundle's baseline images). */
export function readNpyUint8(path: string): { data: Uint8Array; shape: number[] } {
  const raw = readFileSync(path);
  const buf = path.endsWith('.gz') ? gunzipSync(raw) : raw;
  const { descr, shape, n, off } = npyHeader(buf, path);
  if (descr !== '|u1') throw new Error(`${path}: dtype ${descr} is not uint8`);
  if (buf.length - off < n) throw new Error(`${path} is truncated: ${buf.length - off} bytes for ${n} values`);
  return { data: new Uint8Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + n)), shape };
}

/** A .npy (format 1.0) holding a little-endian float32 C-order array: what numpy.load reads with no other library. */
export function encodeNpyFloat32(data: Float32Array, shape: readonly number[]): Buffer {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`npy: shape ${shape.join('×')} needs ${n} values, got ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  // The header is padded with spaces and ends in \n so that magic + length + header is a multiple of 64 bytes.
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + data.byteLength);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, 10 + header.length);
  return out;
}
