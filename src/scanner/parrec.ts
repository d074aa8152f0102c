// Philips PAR/REC (export versions V4, V4.1, V4.2): the PAR text header and its REC pixels, read as nibabel's
// `parrec` reads them (lax slice sort, 'dv' scaling by default, the affine of PARRECHeader.get_affine('scanner')).
// Philips XTC writes one pair per dynamic (Dump-0000.par/.rec); exports hold every dynamic in one pair.
import { affineFromColumns } from './affine.js';
import type { ScannerVolume } from './types.js';

/** A PAR/REC pair that cannot be read (yet); the message is one sentence. */
export class ParRecError extends Error {
  constructor(
    message: string,
    readonly status: 'incomplete' | 'invalid',
  ) {
    super(message);
    this.name = 'ParRecError';
  }
}

export type ParRecScaling = 'dv' | 'fp';

/** Image-definition columns per version (numbers counted as nibabel's image_def_dtds: arrays take several columns). */
const COLUMNS: Record<string, number> = { V4: 41, 'V4.1': 48, 'V4.2': 49 };
const END_MARKER = '# === END OF DATA DESCRIPTION FILE';
/** Bounds on what the header may ask for: a PAR listing more images or larger ones is refused, not allocated. */
const MAX_IMAGES = 65536;
const MAX_SIDE = 2048;

interface ImageDef {
  slice: number;
  dynamic: number;
  recIndex: number;
  bits: number;
  res: [number, number];
  intercept: number;
  slope: number;
  scaleSlope: number;
  thickness: number;
  gap: number;
  orientation: number;
  spacing: [number, number];
  dynBegin: number;
}

export interface ParHeader {
  version: string;
  general: Map<string, string>;
  images: ImageDef[];
}

/** Cheap check used by format detection: the first line of every Philips PAR. */
export function looksLikePar(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 64)).toString('latin1');
  return /^#\s*===\s*DATA DESCRIPTION FILE/.test(head);
}

/** Parses the PAR text; throws ParRecError (incomplete while the end marker is missing, invalid otherwise). */
export function parsePar(text: string): ParHeader {
  if (!text.includes(END_MARKER)) {
    throw new ParRecError(
      'the PAR file has no "END OF DATA DESCRIPTION FILE" line yet: it is still being written or was cut short.',
      'incomplete',
    );
  }
  let version: string | undefined;
  const general = new Map<string, string>();
  const lines: string[] = [];
  let state: 'top' | 'general' | 'comment' | 'images' = 'top';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    // the same state machine as nibabel's _split_header
    if (state === 'top') {
      if (!line.startsWith('#')) state = 'general';
      else if (line.includes('image export tool')) version = line.split(/\s+/).pop();
    }
    if (state === 'general') {
      if (!line.startsWith('.')) state = 'comment';
      else {
        const m = /^.\s+(.*?)\s*:\s*(.*)$/.exec(line);
        if (m) general.set(m[1].toLowerCase(), m[2]);
      }
    }
    if (state === 'comment' && !line.startsWith('#')) state = 'images';
    if (state === 'images') {
      if (line.startsWith('#')) break;
      lines.push(line);
    }
  }
  if (!version || !(version in COLUMNS)) {
    throw new ParRecError(
      `PAR version ${version ?? '(none given)'} is not one this reader knows (V4, V4.1, V4.2); export PAR/REC as V4.2.`,
      'invalid',
    );
  }
  if (!lines.length) throw new ParRecError('the PAR file lists no images.', 'invalid');
  if (lines.length > MAX_IMAGES)
    throw new ParRecError(
      `the PAR file lists ${lines.length} images, more than the ${MAX_IMAGES} this reader accepts.`,
      'invalid',
    );
  const images = lines.map((l, i) => imageDef(l, i, COLUMNS[version!]));
  return { version, general, images };
}

function imageDef(line: string, i: number, columns: number): ImageDef {
  const t = line.split(/\s+/);
  if (t.length < columns)
    throw new ParRecError(
      `image line ${i + 1} of the PAR file has ${t.length} columns, fewer than the ${columns} its version needs.`,
      'invalid',
    );
  const n = (k: number) => {
    const v = Number(t[k]);
    if (!Number.isFinite(v))
      throw new ParRecError(
        `image line ${i + 1} of the PAR file has "${t[k]}" where a number belongs (column ${k + 1}).`,
        'invalid',
      );
    return v;
  };
  return {
    slice: n(0),
    dynamic: n(2),
    recIndex: n(6),
    bits: n(7),
    res: [n(9), n(10)],
    intercept: n(11),
    slope: n(12),
    scaleSlope: n(13),
    thickness: n(22),
    gap: n(23),
    orientation: n(25),
    spacing: [n(28), n(29)],
    dynBegin: n(31),
  };
}

function unique<T>(h: ParHeader, name: string, get: (d: ImageDef) => T): T {
  const first = JSON.stringify(get(h.images[0]));
  for (const d of h.images) {
    if (JSON.stringify(get(d)) !== first)
      throw new ParRecError(
        `the ${name} varies between images of one PAR file, which this reader does not support.`,
        'invalid',
      );
  }
  return get(h.images[0]);
}

function generalNumbers(h: ParHeader, key: string, count: number): number[] {
  const v = h.general.get(key.toLowerCase());
  const nums = v?.trim().split(/\s+/).map(Number) ?? [];
  if (nums.length < count || nums.slice(0, count).some((x) => !Number.isFinite(x))) {
    throw new ParRecError(`the PAR general information lacks a readable "${key}".`, 'invalid');
  }
  return nums.slice(0, count);
}

/** Row-major 3×3 products. */
function mul3(a: number[], b: number[]): number[] {
  const o = new Array<number>(9).fill(0);
  for (let r = 0; r < 3; r++)
    for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) o[3 * r + c] += a[3 * r + k] * b[3 * k + c];
  return o;
}

/** Acquisition (slice orientation code) → Philips PSL axes, nibabel's ACQ_TO_PSL. */
const ACQ_TO_PSL: Record<number, number[]> = {
  1: [0, 1, 0, 0, 0, 1, 1, 0, 0], // transverse
  2: [1, 0, 0, 0, -1, 0, 0, 0, -1], // sagittal
  3: [0, 0, 1, 0, -1, 0, 1, 0, 0], // coronal
};
const PSL_TO_RAS = [0, 0, -1, -1, 0, 0, 0, 1, 0];

/**
 * nibabel's PARRECHeader.get_affine('scanner'): centre the voxel grid, scale by the zooms, permute to PSL, rotate by
 * the midslice angulation as Rz·Rx·Ry (ap = x, fh = y, rl = z), add the off-centre, then PSL → RAS.
 */
export function parAffine(
  shape: number[],
  zooms: number[],
  orientation: number,
  angulationDeg: number[],
  offCentre: number[],
): number[] {
  const perm = ACQ_TO_PSL[orientation];
  if (!perm)
    throw new ParRecError(
      `slice orientation ${orientation} is not transverse (1), sagittal (2) or coronal (3).`,
      'invalid',
    );
  const [ap, fh, rl] = angulationDeg.map((d) => (d * Math.PI) / 180);
  const rx = [1, 0, 0, 0, Math.cos(ap), -Math.sin(ap), 0, Math.sin(ap), Math.cos(ap)];
  const ry = [Math.cos(fh), 0, Math.sin(fh), 0, 1, 0, -Math.sin(fh), 0, Math.cos(fh)];
  const rz = [Math.cos(rl), -Math.sin(rl), 0, Math.sin(rl), Math.cos(rl), 0, 0, 0, 1];
  // nibabel's euler2mat skips a zero angle; cos 0 = 1 and sin 0 = 0 exactly, so multiplying by it changes nothing
  const m = mul3(PSL_TO_RAS, mul3(mul3(mul3(rz, rx), ry), perm));
  const cols = [0, 1, 2].map((j) => [m[j] * zooms[j], m[3 + j] * zooms[j], m[6 + j] * zooms[j]]);
  const centre = [0, 1, 2].map((j) => -(shape[j] - 1) / 2);
  const shift = [0, 1, 2].map((r) => cols[0][r] * centre[0] + cols[1][r] * centre[1] + cols[2][r] * centre[2]);
  const off = [0, 1, 2].map(
    (r) =>
      PSL_TO_RAS[3 * r] * offCentre[0] + PSL_TO_RAS[3 * r + 1] * offCentre[1] + PSL_TO_RAS[3 * r + 2] * offCentre[2],
  );
  return affineFromColumns(cols[0], cols[1], cols[2], [shift[0] + off[0], shift[1] + off[1], shift[2] + off[2]]);
}

export interface ParRecRead {
  volumes: ScannerVolume[];
  /** Things worth telling a user that do not stop the read (a PAR announcing more dynamics than it lists). */
  warnings: string[];
}

export interface ParRecOptions {
  scaling?: ParRecScaling;
  /** The trailing number of the PAR's name (XTC Dump-0007.par → 7): the index of a single-dynamic pair. */
  nameIndex?: number;
}

/** Decodes a PAR header with its REC bytes into full volumes (partial trailing volumes are an error, as in nibabel). */
export function readParRec(parText: string, rec: Uint8Array, opts: ParRecOptions = {}): ParRecRead {
  const h = parsePar(parText);
  const warnings: string[] = [];
  const bits = unique(h, 'pixel size', (d) => d.bits);
  if (bits !== 8 && bits !== 16)
    throw new ParRecError(`${bits}-bit PAR/REC pixels are not supported (8 or 16 only).`, 'invalid');
  const [nx, ny] = unique(h, 'recon resolution', (d) => d.res);
  if (!(nx >= 1 && ny >= 1 && nx <= MAX_SIDE && ny <= MAX_SIDE && Number.isInteger(nx) && Number.isInteger(ny))) {
    throw new ParRecError(`the PAR recon resolution ${nx}×${ny} is outside 1..${MAX_SIDE}.`, 'invalid');
  }
  const maxSlices = generalNumbers(h, 'Max. number of slices/locations', 1)[0];
  // volume number of an image = how often its slice number came before (nibabel's vol_numbers)
  const seen = new Map<number, number>();
  const vol = h.images.map((d) => {
    if (!(Number.isInteger(d.slice) && d.slice >= 1 && d.slice <= maxSlices)) {
      throw new ParRecError(
        `slice number ${d.slice} is outside 1..${maxSlices} (the PAR's "Max. number of slices").`,
        'invalid',
      );
    }
    const c = seen.get(d.slice) ?? 0;
    seen.set(d.slice, c + 1);
    return c;
  });
  const nVolsListed = Math.max(...vol) + 1;
  const byVol: number[][] = Array.from({ length: nVolsListed }, () => []);
  h.images.forEach((_, i) => byVol[vol[i]].push(i));
  const full = byVol.filter((imgs) => new Set(imgs.map((i) => h.images[i].slice)).size === maxSlices);
  if (full.length < byVol.length) {
    throw new ParRecError(
      `the PAR lists ${byVol.length - full.length} partial volume(s) (fewer than its ${maxSlices} slices): the export was cut short; export the series again.`,
      'invalid',
    );
  }
  const slicesPresent = new Set(h.images.map((d) => d.slice)).size;
  const dynamicsAnnounced = h.general.has('max. number of dynamics')
    ? generalNumbers(h, 'Max. number of dynamics', 1)[0]
    : undefined;
  if (dynamicsAnnounced !== undefined && nVolsListed > 1 && nVolsListed !== dynamicsAnnounced) {
    warnings.push(
      `the PAR announces ${dynamicsAnnounced} dynamics but lists ${nVolsListed}; the ${nVolsListed} listed were read.`,
    );
  }
  const imageBytes = nx * ny * (bits / 8);
  const maxRecIndex = Math.max(...h.images.map((d) => d.recIndex));
  if (h.images.some((d) => !Number.isInteger(d.recIndex) || d.recIndex < 0))
    throw new ParRecError('a PAR image line has a negative or fractional "index in REC file".', 'invalid');
  const need = (maxRecIndex + 1) * imageBytes;
  if (rec.length < need) {
    throw new ParRecError(
      `the REC holds ${rec.length} bytes but its PAR lists images up to index ${maxRecIndex} of ${nx}×${ny}×${bits} bits (${need} bytes): the REC is truncated or still being written.`,
      'incomplete',
    );
  }
  const zooms = [
    ...unique(h, 'pixel spacing', (d) => d.spacing),
    unique(h, 'slice thickness', (d) => d.thickness) + unique(h, 'slice gap', (d) => d.gap),
  ];
  const orientation = unique(h, 'slice orientation', (d) => d.orientation);
  const affine = parAffine(
    [nx, ny, slicesPresent],
    zooms,
    orientation,
    generalNumbers(h, 'Angulation midslice(ap,fh,rl)[degr]', 3),
    generalNumbers(h, 'Off Centre midslice(ap,fh,rl) [mm]', 3),
  );
  const trMs = h.general.get('repetition time [ms]') ?? h.general.get('repetition time [msec]');
  const tr = trMs ? Number(trMs.trim().split(/\s+/)[0]) / 1000 : undefined;
  const seriesNumber = h.general.has('acquisition nr') ? Number(h.general.get('acquisition nr')) : undefined;
  const view = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const volumes: ScannerVolume[] = full.map((imgs, v) => {
    const sorted = [...imgs].sort((a, b) => h.images[a].slice - h.images[b].slice);
    const data = new Float32Array(nx * ny * sorted.length);
    sorted.forEach((img, z) => {
      const d = h.images[img];
      // 'dv' = console value PV·RS + RI; 'fp' = DV / (RS·SS), written as nibabel does: PV/SS + RI/(RS·SS)
      const slope = opts.scaling === 'fp' ? 1 / d.scaleSlope : d.slope;
      const inter = opts.scaling === 'fp' ? d.intercept / (d.slope * d.scaleSlope) : d.intercept;
      const base = d.recIndex * imageBytes;
      const out = z * nx * ny;
      for (let p = 0; p < nx * ny; p++) {
        const pv = bits === 16 ? view.getUint16(base + 2 * p, true) : rec[base + p];
        data[out + p] = pv * slope + inter;
      }
    });
    const dyn = h.images[sorted[0]].dynamic;
    return {
      dims: [nx, ny, sorted.length],
      affine: affine.slice(),
      voxelSize: zooms.slice(),
      tr: tr && tr > 0 ? tr : undefined,
      acquisitionTime: h.images[sorted[0]].dynBegin,
      seriesNumber: Number.isFinite(seriesNumber) ? seriesNumber : undefined,
      // one dynamic per pair (XTC): the name's number, else the dynamic number; several: the position in the pair
      volumeIndex: full.length > 1 ? v : (opts.nameIndex ?? (Number.isInteger(dyn) && dyn >= 1 ? dyn - 1 : undefined)),
      epi: h.general.has('technique') ? /EPI/i.test(h.general.get('technique')!) : undefined,
      source: 'parrec',
      data,
    };
  });
  return { volumes, warnings };
}
