// AFNI real-time plugin protocol (plug_realtime; AFNI's README.realtime and its reference sender rtfeedme.c), data
// channel side: newline-separated header commands ended by a NUL byte, then raw slices (2D+z, 2D+zt) or volumes
// (3D, 3D+t). Written from the published description only: it has not been run against AFNI's own senders.
import { affineFromColumns } from './affine.js';
import type { ScannerVolume } from './types.js';

/** rtfeedme's end-of-dataset mark: an image-sized transmission that starts with this string. */
export const AFNI_END_MARKER = 'Et Earello Endorenna utulien!!';
export const AFNI_LIMITS = { maxHeaderBytes: 64 << 10, maxSide: 1024, maxVoxels: 16_777_216 };

export class AfniError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AfniError';
  }
}

export interface AfniAcquisition {
  slices: boolean;
  nx: number;
  ny: number;
  nz: number;
  datum: 'byte' | 'short' | 'float';
  bigEndian: boolean;
  /** seconds */
  tr?: number;
  /** Slice positions (0-based z) in arrival order within a volume (2-D modes). */
  zorder: number[];
  affine: number[];
  voxelSize: [number, number, number];
  name?: string;
  /** Commands read but not used (NOTE, DRIVE_AFNI, GRAPH_*, ...). */
  ignored: string[];
}

/** Axis codes of XYZAXES → RAS+ unit vector of increasing index. "R-L": index grows from right to left. */
const AXES: Record<string, [number, number, number]> = {
  'R-L': [-1, 0, 0],
  'L-R': [1, 0, 0],
  'P-A': [0, 1, 0],
  'A-P': [0, -1, 0],
  'I-S': [0, 0, 1],
  'S-I': [0, 0, -1],
};
/** A coordinate's letter → the RAS+ axis and sign it is measured along. */
const LETTERS: Record<string, [number, number]> = {
  R: [0, 1],
  L: [0, -1],
  A: [1, 1],
  P: [1, -1],
  S: [2, 1],
  I: [2, -1],
};

const TYPESTR: Record<string, string> = {
  'RIGHT-TO-LEFT': 'R-L',
  'LEFT-TO-RIGHT': 'L-R',
  'POSTERIOR-TO-ANTERIOR': 'P-A',
  'ANTERIOR-TO-POSTERIOR': 'A-P',
  'INFERIOR-TO-SUPERIOR': 'I-S',
  'SUPERIOR-TO-INFERIOR': 'S-I',
};
function axisCode(a: string): string {
  const u = a.toUpperCase();
  if (TYPESTR[u]) return TYPESTR[u];
  return /^[RLAPIS]{2}$/.test(u) ? `${u[0]}-${u[1]}` : u;
}

const num = (s: string | undefined, what: string): number => {
  const v = Number(s);
  if (s === undefined || !Number.isFinite(v))
    throw new AfniError(`the AFNI header command ${what} needs a number (got "${s ?? ''}").`);
  return v;
};

/** Parses the header commands (the text before the NUL). Unknown commands are kept in `ignored`. */
export function parseAfniHeader(text: string): AfniAcquisition {
  const cmd = new Map<string, string[]>();
  const ignored: string[] = [];
  const known = new Set([
    'ACQUISITION_TYPE',
    'TR',
    'XYFOV',
    'XYMATRIX',
    'ZNUM',
    'ZDELTA',
    'ZFIRST',
    'XYZAXES',
    'XYZFIRST',
    'DATUM',
    'BYTEORDER',
    'ZORDER',
    'NUM_CHAN',
    'NAME',
    'PREFIX',
  ]);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const [k, ...args] = line.split(/\s+/);
    const key = k.toUpperCase();
    if (known.has(key)) cmd.set(key, args);
    else ignored.push(key);
  }
  const type = (cmd.get('ACQUISITION_TYPE')?.[0] ?? '2D+zt').toUpperCase();
  if (!['2D+Z', '2D+ZT', '3D', '3D+T'].includes(type))
    throw new AfniError(`ACQUISITION_TYPE ${type} is not 2D+z, 2D+zt, 3D or 3D+t.`);
  const chans = Number(cmd.get('NUM_CHAN')?.[0] ?? 1);
  if (chans !== 1)
    throw new AfniError(
      `NUM_CHAN ${chans}: several channels (coils or echoes) are not supported; send one combined channel.`,
    );
  const m = cmd.get('XYMATRIX');
  if (!m) throw new AfniError('the AFNI header has no XYMATRIX command, so the image size is unknown.');
  // as plug_realtime: a missing y size is the x size
  const nx = num(m[0], 'XYMATRIX'),
    ny = m[1] !== undefined ? num(m[1], 'XYMATRIX') : nx;
  const nz = m[2] !== undefined ? num(m[2], 'XYMATRIX') : num(cmd.get('ZNUM')?.[0], 'ZNUM');
  for (const n of [nx, ny, nz]) {
    if (!Number.isInteger(n) || n < 1 || n > AFNI_LIMITS.maxSide)
      throw new AfniError(`image size ${nx}×${ny}×${nz} is outside 1..${AFNI_LIMITS.maxSide} a side.`);
  }
  if (nx * ny * nz > AFNI_LIMITS.maxVoxels)
    throw new AfniError(`image size ${nx}×${ny}×${nz} is more than ${AFNI_LIMITS.maxVoxels} voxels.`);
  const datum = (cmd.get('DATUM')?.[0] ?? 'short').toLowerCase();
  if (datum !== 'short' && datum !== 'float' && datum !== 'byte')
    throw new AfniError(`DATUM ${datum} is not supported (short, float or byte; complex data cannot be decoded).`);
  const order = (cmd.get('BYTEORDER')?.[0] ?? 'LSB_FIRST').toUpperCase();
  if (order !== 'LSB_FIRST' && order !== 'MSB_FIRST')
    throw new AfniError(`BYTEORDER ${order} is neither LSB_FIRST nor MSB_FIRST.`);
  // field of view: XYFOV fx [fy [fz]] (fy defaults to fx); a z FOV wins over ZDELTA, as in plug_realtime; its
  // defaults are a 240 mm FOV and 5 mm slices
  const fov = cmd.get('XYFOV') ?? ['240'];
  const fx = num(fov[0], 'XYFOV'),
    fy = fov[1] !== undefined ? num(fov[1], 'XYFOV') : fx;
  const dz =
    fov[2] !== undefined && Number(fov[2]) > 0
      ? num(fov[2], 'XYFOV') / nz
      : cmd.has('ZDELTA')
        ? num(cmd.get('ZDELTA')![0], 'ZDELTA')
        : 5;
  const voxelSize: [number, number, number] = [fx / nx, fy / ny, dz];
  if (voxelSize.some((d) => !(d > 0)))
    throw new AfniError(`voxel size ${voxelSize.join('×')} mm from XYFOV/ZDELTA is not positive.`);
  // axis codes as AFNI's ORIENT_shortstr ("R-L"), ORIENT_tinystr ("RL") or ORIENT_typestr ("Right-to-Left")
  const axesCodes = (cmd.get('XYZAXES') ?? ['R-L', 'A-P', 'I-S']).map(axisCode);
  const axes = axesCodes.map((a) => AXES[a]);
  if (axes.length !== 3 || axes.some((a) => !a))
    throw new AfniError(`XYZAXES ${axesCodes.join(' ')} is not three of R-L, L-R, A-P, P-A, I-S, S-I.`);
  if (new Set(axes.map((a) => a.findIndex((v) => v !== 0))).size !== 3)
    throw new AfniError(`XYZAXES ${axesCodes.join(' ')} names one direction twice.`);
  const cols = axes.map((a, i) => a.map((v) => v * voxelSize[i]));
  // Centre of the first voxel, per axis: XYZFIRST x y z (or ZFIRST z); without one, that axis is centred on 0 (AFNI's
  // default). As plug_realtime reads ZFIRST: a letter names the direction the value is measured in (120L = 120 mm
  // left); a bare number is measured toward the side the axis starts from (the first letter of its XYZAXES code).
  const first = [0, 0, 0];
  const given: (string | undefined)[] = [undefined, undefined, cmd.get('ZFIRST')?.[0]];
  const xf = cmd.get('XYZFIRST');
  if (xf) {
    if (xf.length < 3) throw new AfniError('XYZFIRST needs three coordinates.');
    xf.slice(0, 3).forEach((v, i) => {
      given[i] = v;
    });
  }
  for (let i = 0; i < 3; i++) {
    const axis = axes[i].findIndex((c) => c !== 0);
    const g = given[i];
    if (g === undefined) {
      first[axis] =
        -(axes[i][axis] * [voxelSize[0] * (nx - 1), voxelSize[1] * (ny - 1), voxelSize[2] * (nz - 1)][i]) / 2;
      continue;
    }
    const mm = /^([-+]?[\d.]+(?:e[-+]?\d+)?)([RLAPIS])?$/i.exec(g);
    if (!mm)
      throw new AfniError(
        `first-voxel coordinate "${g}" (XYZFIRST/ZFIRST) is not a number with an optional R/L/A/P/I/S letter.`,
      );
    const [world, sign] = LETTERS[(mm[2] ?? axesCodes[i][0]).toUpperCase()];
    if (world !== axis)
      throw new AfniError(
        `first-voxel coordinate "${g}" names a direction that is not along axis ${i + 1} (${axesCodes[i]}).`,
      );
    first[axis] = Number(mm[1]) * sign;
  }
  // ZORDER: the order slices arrive in; alt (AFNI's default: 0,2,4,...,1,3,5,...), seq, or explicit k0 k1 ...
  const zo = cmd.get('ZORDER') ?? ['alt'];
  let zorder: number[];
  const kind = zo[0].toLowerCase();
  if (kind === 'seq') zorder = [...Array(nz).keys()];
  else if (kind === 'alt')
    zorder = [...Array(nz).keys()].filter((k) => k % 2 === 0).concat([...Array(nz).keys()].filter((k) => k % 2 === 1));
  else if (kind === 'explicit') {
    zorder = zo.slice(1).map((s) => num(s, 'ZORDER explicit'));
    if (
      zorder.length !== nz ||
      new Set(zorder).size !== nz ||
      zorder.some((k) => !Number.isInteger(k) || k < 0 || k >= nz)
    ) {
      throw new AfniError(`ZORDER explicit must list each of the ${nz} slices 0..${nz - 1} once.`);
    }
  } else throw new AfniError(`ZORDER ${zo[0]} is not alt, seq or explicit.`);
  const tr = cmd.has('TR') ? num(cmd.get('TR')![0], 'TR') : undefined;
  return {
    slices: type.startsWith('2D'),
    nx,
    ny,
    nz,
    datum,
    bigEndian: order === 'MSB_FIRST',
    tr: tr && tr > 0 ? tr : undefined,
    zorder,
    affine: affineFromColumns(cols[0], cols[1], cols[2], first),
    voxelSize,
    name: (cmd.get('NAME') ?? cmd.get('PREFIX'))?.[0],
    ignored,
  };
}

export type AfniEvent =
  | { kind: 'header'; acq: AfniAcquisition }
  | { kind: 'volume'; volume: ScannerVolume; firstByteAt: number }
  | { kind: 'end' };

const BYTES = { byte: 1, short: 2, float: 4 } as const;

/** Data channel parser: header, then images; the end marker starts a new dataset (a new header follows). */
export class AfniDataStream {
  // received bytes as a list: an image is joined once when all its bytes are in (no re-copying per chunk)
  private chunks: Buffer[] = [];
  private length = 0;
  private acq: AfniAcquisition | undefined;
  private volume: Float32Array | undefined;
  private sliceInVolume = 0;
  private volumeIndex = 0;
  private firstByteAt: number | undefined;

  /** Bytes of a partly received image or volume (dropped if the sender goes away). */
  pending(): number {
    const a = this.acq;
    return this.length + (a ? this.sliceInVolume * a.nx * a.ny * BYTES[a.datum] : 0);
  }

  private take(n: number): Buffer {
    let out: Buffer;
    if (this.chunks[0].length >= n) out = this.chunks[0].subarray(0, n);
    else out = Buffer.concat(this.chunks, this.length).subarray(0, n);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) {
        left -= c.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }

  push(chunk: Buffer, now = Date.now()): AfniEvent[] {
    this.firstByteAt ??= now;
    this.chunks.push(chunk);
    this.length += chunk.length;
    const out: AfniEvent[] = [];
    for (;;) {
      if (!this.acq) {
        if (!this.length) return out;
        const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.length);
        this.chunks = [all];
        const nul = all.indexOf(0);
        if (nul < 0) {
          if (all.length > AFNI_LIMITS.maxHeaderBytes)
            throw new AfniError(
              `the AFNI header has run past ${AFNI_LIMITS.maxHeaderBytes} bytes without its closing NUL byte.`,
            );
          return out;
        }
        this.acq = parseAfniHeader(all.subarray(0, nul).toString('latin1'));
        this.take(nul + 1);
        this.volume = undefined;
        this.sliceInVolume = 0;
        this.volumeIndex = 0;
        out.push({ kind: 'header', acq: this.acq });
        continue;
      }
      const a = this.acq;
      const plane = a.nx * a.ny;
      const n = (a.slices ? plane : plane * a.nz) * BYTES[a.datum];
      if (this.length < n) return out;
      const img = this.take(n);
      if (
        img.length >= AFNI_END_MARKER.length &&
        img.subarray(0, AFNI_END_MARKER.length).toString('latin1') === AFNI_END_MARKER
      ) {
        this.acq = undefined;
        out.push({ kind: 'end' });
        continue;
      }
      const values = decode(img, a);
      if (!a.slices) {
        out.push({ kind: 'volume', volume: this.make(values), firstByteAt: this.firstByteAt ?? now });
        this.firstByteAt = this.length ? now : undefined;
        continue;
      }
      this.volume ??= new Float32Array(plane * a.nz);
      this.volume.set(values, a.zorder[this.sliceInVolume] * plane);
      this.sliceInVolume++;
      if (this.sliceInVolume === a.nz) {
        out.push({ kind: 'volume', volume: this.make(this.volume), firstByteAt: this.firstByteAt ?? now });
        this.volume = undefined;
        this.sliceInVolume = 0;
        this.firstByteAt = this.length ? now : undefined;
      }
    }
  }

  private make(data: Float32Array): ScannerVolume {
    const a = this.acq!;
    return {
      dims: [a.nx, a.ny, a.nz],
      affine: a.affine.slice(),
      voxelSize: a.voxelSize.slice(),
      tr: a.tr,
      volumeIndex: this.volumeIndex++,
      source: 'afni',
      data,
    };
  }
}

function decode(b: Buffer, a: AfniAcquisition): Float32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = !a.bigEndian;
  const n = b.length / BYTES[a.datum];
  const out = new Float32Array(n);
  if (a.datum === 'short') for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, le);
  else if (a.datum === 'float') for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, le);
  else for (let i = 0; i < n; i++) out[i] = b[i];
  return out;
}
