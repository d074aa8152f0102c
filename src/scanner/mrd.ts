// ISMRMRD / MRD streaming protocol (Siemens FIRE): an incremental message parser and the assembly of MRD images into
// volumes. Spec: ismrmrd doc/mrd_streaming_protocol.md and doc/mrd_image_data.md; every message starts with a uint16 id
// (little-endian): 1 config file (1024 bytes), 2 config text and 5 text (uint32 length + UTF-8), 3 XML header (uint32
// length + XML), 4 close, 1008 acquisition, 1022 image, 1026 waveform, 1030 ndarray.
import { affineFromColumns, dot3, norm3 } from './affine.js';
import type { ScannerVolume } from './types.js';

export const MRD = {
  CONFIG_FILE: 1,
  CONFIG_TEXT: 2,
  HEADER: 3,
  CLOSE: 4,
  TEXT: 5,
  ACQUISITION: 1008,
  IMAGE: 1022,
  WAVEFORM: 1026,
  NDARRAY: 1030,
} as const;
const NAMES: Record<number, string> = {
  1: 'config file',
  2: 'config text',
  5: 'text',
  1008: 'acquisition (raw k-space)',
  1026: 'waveform',
  1030: 'ndarray',
};

/** Bounds on sizes announced by the wire: anything larger is refused before a byte is allocated. */
export const MRD_LIMITS = {
  maxTextBytes: 16 << 20,
  maxAttributeBytes: 1 << 20,
  maxSide: 1024,
  maxVoxels: 16_777_216,
  maxSkipBytes: 256 << 20,
  maxNdarrayDims: 8,
};

const IMAGE_HEADER_BYTES = 198;
const ACQ_HEADER_BYTES = 340;
const WAVEFORM_HEADER_BYTES = 40;
/** MRD data_type → bytes per value (complex types are refused). */
const TYPE_BYTES: Record<number, number> = { 1: 2, 2: 2, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 16 };

/** A stream that cannot be followed any further; the message is one sentence. */
export class MrdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MrdError';
  }
}

export interface MrdImage {
  dataType: number;
  matrix: [number, number, number];
  fov: [number, number, number];
  channels: number;
  /** LPS mm: the centre of the excited volume. */
  position: [number, number, number];
  readDir: [number, number, number];
  phaseDir: [number, number, number];
  sliceDir: [number, number, number];
  slice: number;
  repetition: number;
  imageType: number;
  imageIndex: number;
  seriesIndex: number;
  measurementUid: number;
  attributes: string;
  /** Values as float32, x (read) fastest, then y (phase), then z; undefined for complex or multi-channel images. */
  data?: Float32Array;
  /** Why `data` is missing. */
  refused?: string;
}

export type MrdMessage =
  | { kind: 'header'; xml: string }
  | { kind: 'config'; text: string }
  | { kind: 'image'; image: MrdImage; firstByteAt: number }
  | { kind: 'skipped'; id: number; name: string; bytes: number }
  | { kind: 'close' };

/** Incremental parser: push() socket chunks, take whole messages out. Throws MrdError when the stream is unusable. */
export class MrdStreamParser {
  private chunks: Buffer[] = [];
  private length = 0;
  /** When the first byte of the message being parsed arrived. */
  private firstByteAt: number | undefined;

  push(chunk: Buffer, now = Date.now()): MrdMessage[] {
    if (this.length === 0) this.firstByteAt = now;
    this.chunks.push(chunk);
    this.length += chunk.length;
    const out: MrdMessage[] = [];
    for (;;) {
      const m = this.next();
      if (!m) break;
      out.push(m);
      this.firstByteAt = this.length > 0 ? now : undefined;
      if (m.kind === 'close') break;
    }
    return out;
  }

  /** Bytes received but not yet part of a whole message. */
  pending(): number {
    return this.length;
  }

  private bytes(n: number): Buffer | undefined {
    if (this.length < n) return undefined;
    if (this.chunks[0].length < n) {
      const all = Buffer.concat(this.chunks, this.length);
      this.chunks = [all];
    }
    return this.chunks[0].subarray(0, n);
  }

  private consume(n: number): void {
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0];
      if (c.length <= n) {
        n -= c.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = c.subarray(n);
        n = 0;
      }
    }
  }

  private next(): MrdMessage | undefined {
    const head = this.bytes(2);
    if (!head) return undefined;
    const id = head.readUInt16LE(0);
    switch (id) {
      case MRD.CLOSE:
        this.consume(2);
        return { kind: 'close' };
      case MRD.CONFIG_FILE: {
        const b = this.bytes(2 + 1024);
        if (!b) return undefined;
        const text = b.subarray(2).toString('utf8').replace(/\0+$/, '');
        this.consume(2 + 1024);
        return { kind: 'config', text };
      }
      case MRD.CONFIG_TEXT:
      case MRD.HEADER:
      case MRD.TEXT: {
        const lb = this.bytes(6);
        if (!lb) return undefined;
        const len = lb.readUInt32LE(2);
        if (len > MRD_LIMITS.maxTextBytes)
          throw new MrdError(
            `an MRD ${id === MRD.HEADER ? 'XML header' : 'text'} message announces ${len} bytes, more than the ${MRD_LIMITS.maxTextBytes} accepted; the stream is not followed further.`,
          );
        const b = this.bytes(6 + len);
        if (!b) return undefined;
        const text = b.subarray(6).toString('utf8');
        this.consume(6 + len);
        if (id === MRD.HEADER) return { kind: 'header', xml: text };
        if (id === MRD.CONFIG_TEXT) return { kind: 'config', text };
        return { kind: 'skipped', id, name: NAMES[id], bytes: 6 + len };
      }
      case MRD.IMAGE:
        return this.image();
      case MRD.ACQUISITION: {
        const h = this.bytes(2 + ACQ_HEADER_BYTES);
        if (!h) return undefined;
        const samples = h.readUInt16LE(2 + 34),
          channels = h.readUInt16LE(2 + 38),
          traj = h.readUInt16LE(2 + 176);
        return this.skip(id, 2 + ACQ_HEADER_BYTES + samples * traj * 4 + samples * channels * 8);
      }
      case MRD.WAVEFORM: {
        const h = this.bytes(2 + WAVEFORM_HEADER_BYTES);
        if (!h) return undefined;
        const samples = h.readUInt16LE(2 + 28),
          channels = h.readUInt16LE(2 + 30);
        return this.skip(id, 2 + WAVEFORM_HEADER_BYTES + samples * channels * 4);
      }
      case MRD.NDARRAY: {
        const h = this.bytes(8);
        if (!h) return undefined;
        const type = h.readUInt16LE(2),
          ndim = h.readUInt16LE(6);
        if (ndim > MRD_LIMITS.maxNdarrayDims || !TYPE_BYTES[type])
          throw new MrdError(
            `an MRD ndarray message has ${ndim} dimensions of type ${type}, which cannot be skipped safely; the stream is not followed further.`,
          );
        const d = this.bytes(8 + 8 * ndim);
        if (!d) return undefined;
        let n = 1;
        for (let i = 0; i < ndim; i++) n *= Number(d.readBigUInt64LE(8 + 8 * i));
        return this.skip(id, 8 + 8 * ndim + n * TYPE_BYTES[type]);
      }
      default:
        throw new MrdError(
          `MRD message id ${id} is not part of the MRD streaming protocol (or the stream lost its place), so its length is unknown; the stream is not followed further.`,
        );
    }
  }

  private skip(id: number, total: number): MrdMessage | undefined {
    if (!Number.isFinite(total) || total > MRD_LIMITS.maxSkipBytes) {
      throw new MrdError(
        `an MRD ${NAMES[id]} message announces ${total} bytes, more than the ${MRD_LIMITS.maxSkipBytes} accepted; the stream is not followed further.`,
      );
    }
    if (this.length < total) return undefined;
    this.consume(total);
    return { kind: 'skipped', id, name: NAMES[id], bytes: total };
  }

  private image(): MrdMessage | undefined {
    const h = this.bytes(2 + IMAGE_HEADER_BYTES + 8);
    if (!h) return undefined;
    const o = 2;
    const f32 = (k: number) => h.readFloatLE(o + k);
    const v3 = (k: number): [number, number, number] => [f32(k), f32(k + 4), f32(k + 8)];
    const dataType = h.readUInt16LE(o + 2);
    const matrix: [number, number, number] = [h.readUInt16LE(o + 16), h.readUInt16LE(o + 18), h.readUInt16LE(o + 20)];
    const channels = h.readUInt16LE(o + 34);
    const attrLen = Number(h.readBigUInt64LE(o + IMAGE_HEADER_BYTES));
    if (attrLen > MRD_LIMITS.maxAttributeBytes)
      throw new MrdError(
        `an MRD image announces ${attrLen} bytes of attributes, more than the ${MRD_LIMITS.maxAttributeBytes} accepted; the stream is not followed further.`,
      );
    const bpv = TYPE_BYTES[dataType];
    if (!bpv)
      throw new MrdError(
        `an MRD image has data type ${dataType}, which is not an MRD type, so its size is unknown; the stream is not followed further.`,
      );
    const values = channels * matrix[0] * matrix[1] * matrix[2];
    if (matrix.some((m) => m > MRD_LIMITS.maxSide) || values > MRD_LIMITS.maxVoxels) {
      throw new MrdError(
        `an MRD image of ${matrix.join('×')} voxels × ${channels} channel(s) is larger than the ${MRD_LIMITS.maxSide} a side / ${MRD_LIMITS.maxVoxels} values accepted; the stream is not followed further.`,
      );
    }
    const total = 2 + IMAGE_HEADER_BYTES + 8 + attrLen + values * bpv;
    const b = this.bytes(total);
    if (!b) return undefined;
    const image: MrdImage = {
      dataType,
      matrix,
      fov: v3(22),
      channels,
      position: v3(36),
      readDir: v3(48),
      phaseDir: v3(60),
      sliceDir: v3(72),
      slice: h.readUInt16LE(o + 98),
      repetition: h.readUInt16LE(o + 104),
      imageType: h.readUInt16LE(o + 124),
      imageIndex: h.readUInt16LE(o + 126),
      seriesIndex: h.readUInt16LE(o + 128),
      measurementUid: h.readUInt32LE(o + 12),
      attributes: b
        .subarray(o + IMAGE_HEADER_BYTES + 8, o + IMAGE_HEADER_BYTES + 8 + attrLen)
        .toString('utf8')
        .replace(/\0+$/, ''),
    };
    const start = o + IMAGE_HEADER_BYTES + 8 + attrLen;
    if (dataType === 7 || dataType === 8) image.refused = 'it is complex-valued (send magnitude images)';
    else if (channels !== 1) image.refused = `it has ${channels} channels (send coil-combined images)`;
    else if (values === 0) image.refused = 'it has no voxels';
    else {
      const data = new Float32Array(values);
      const dv = new DataView(b.buffer, b.byteOffset + start, values * bpv);
      const get = [
        undefined,
        (i: number) => dv.getUint16(2 * i, true),
        (i: number) => dv.getInt16(2 * i, true),
        (i: number) => dv.getUint32(4 * i, true),
        (i: number) => dv.getInt32(4 * i, true),
        (i: number) => dv.getFloat32(4 * i, true),
        (i: number) => dv.getFloat64(8 * i, true),
      ][dataType]!;
      for (let i = 0; i < values; i++) data[i] = get(i);
      image.data = data;
    }
    const firstByteAt = this.firstByteAt ?? Date.now();
    this.consume(total);
    return { kind: 'image', image, firstByteAt };
  }
}

/** What the XML header says that the bridge needs: the run's identity, TR and slices per volume. */
export interface MrdHeaderInfo {
  measurementId?: string;
  /** seconds */
  tr?: number;
  slicesPerVolume?: number;
}

function tagText(xml: string, path: string[]): string | undefined {
  let scope = xml;
  for (const t of path) {
    const m = new RegExp(`<${t}(?:\\s[^>]*)?>([\\s\\S]*?)</${t}>`).exec(scope);
    if (!m) return undefined;
    scope = m[1];
  }
  return scope.trim();
}

/** Reads the few header fields the bridge uses (regular expressions over a bounded string: no XML library needed). */
export function parseMrdHeader(xml: string): MrdHeaderInfo {
  const tr = Number(tagText(xml, ['sequenceParameters', 'TR']));
  const maxSlice = Number(tagText(xml, ['encoding', 'encodingLimits', 'slice', 'maximum']));
  return {
    measurementId: tagText(xml, ['measurementInformation', 'measurementID']),
    tr: Number.isFinite(tr) && tr > 0 ? tr / 1000 : undefined,
    slicesPerVolume:
      Number.isInteger(maxSlice) && maxSlice >= 0 && maxSlice < MRD_LIMITS.maxSide ? maxSlice + 1 : undefined,
  };
}

const LPS_TO_RAS = [-1, -1, 1];

/**
 * The affine of an MRD image stack: x along read_dir, y along phase_dir, z along slice_dir (for 2-D images, the slices
 * sorted by position along it); voxel size = field_of_view / matrix_size in-plane; `position` is the centre of the
 * excited volume (of each slice for 2-D images), in LPS, turned into RAS+.
 */
export function mrdAffine(first: MrdImage, nz: number, sliceStep: number, centre: number[]): number[] {
  const [nx, ny] = first.matrix;
  const dx = first.fov[0] / nx,
    dy = first.fov[1] / ny;
  const unit = (v: number[]) => {
    const n = norm3(v) || 1;
    return v.map((x) => x / n);
  };
  const r = unit(first.readDir),
    p = unit(first.phaseDir),
    s = unit(first.sliceDir);
  const cx = r.map((v, i) => v * dx * LPS_TO_RAS[i]);
  const cy = p.map((v, i) => v * dy * LPS_TO_RAS[i]);
  const cz = s.map((v, i) => v * sliceStep * LPS_TO_RAS[i]);
  const c = centre.map((v, i) => v * LPS_TO_RAS[i]);
  const origin = [0, 1, 2].map((i) => c[i] - ((nx - 1) / 2) * cx[i] - ((ny - 1) / 2) * cy[i] - ((nz - 1) / 2) * cz[i]);
  return affineFromColumns(cx, cy, cz, origin);
}

/** Volumes from MRD images: a 3-D image is a volume; 2-D images are gathered per repetition until all slices are in. */
export class MrdVolumeAssembler {
  private pending = new Map<number, { images: Map<number, MrdImage>; firstByteAt: number }>();
  constructor(private slicesPerVolume: number | undefined) {}

  setSlicesPerVolume(n: number | undefined): void {
    this.slicesPerVolume = n;
  }

  /** Returns the volume this image completes, if any; throws MrdError for an image that cannot join its stack. */
  add(
    img: MrdImage,
    firstByteAt: number,
    tr: number | undefined,
  ): { volume: ScannerVolume; firstByteAt: number } | undefined {
    if (!img.data) return undefined;
    if (img.matrix[2] > 1)
      return { volume: this.volume([img], img.matrix[2], img.fov[2] / img.matrix[2], img.position, tr), firstByteAt };
    const n = this.slicesPerVolume ?? 1;
    let p = this.pending.get(img.repetition);
    if (!p) {
      if (this.pending.size >= 4) {
        // a repetition never completed (a lost slice): drop the oldest rather than grow without bound
        const oldest = Math.min(...this.pending.keys());
        this.pending.delete(oldest);
      }
      p = { images: new Map(), firstByteAt };
      this.pending.set(img.repetition, p);
    }
    p.images.set(img.slice, img);
    if (p.images.size < n) return undefined;
    this.pending.delete(img.repetition);
    const s = p.images.values().next().value!.sliceDir;
    const stack = [...p.images.values()].sort((a, b) => dot3(a.position, s) - dot3(b.position, s));
    const first = stack[0];
    for (const im of stack) {
      if (im.matrix[0] !== first.matrix[0] || im.matrix[1] !== first.matrix[1])
        throw new MrdError(
          `the slices of repetition ${img.repetition} have different matrix sizes (${first.matrix.slice(0, 2).join('×')} and ${im.matrix.slice(0, 2).join('×')}).`,
        );
    }
    const last = stack[stack.length - 1];
    const step =
      stack.length > 1
        ? dot3(
            last.position.map((v, i) => v - first.position[i]),
            s,
          ) /
          (norm3(s) || 1) /
          (stack.length - 1)
        : first.fov[2] || 1;
    const centre = first.position.map((v, i) => (v + last.position[i]) / 2);
    return { volume: this.volume(stack, stack.length, step, centre, tr), firstByteAt: p.firstByteAt };
  }

  private volume(stack: MrdImage[], nz: number, step: number, centre: number[], tr: number | undefined): ScannerVolume {
    const first = stack[0];
    const [nx, ny] = first.matrix;
    const plane = nx * ny;
    let data: Float32Array;
    if (stack.length === 1) data = first.data!;
    else {
      data = new Float32Array(plane * nz);
      stack.forEach((im, k) => data.set(im.data!, k * plane));
    }
    const affine = mrdAffine(first, nz, step, centre);
    return {
      dims: [nx, ny, nz],
      affine,
      voxelSize: [first.fov[0] / nx, first.fov[1] / ny, Math.abs(step)],
      tr,
      volumeIndex: first.repetition,
      source: 'mrd',
      data,
    };
  }
}
