// Helpers that ask nibabel (models/mindsemantix/oracles/nib_read.py) what it makes of a file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = new URL('../../../', import.meta.url).pathname;
export const python = join(root, '.venv/bin/python');
export const nibData = join(root, '.venv/lib/python3.11/site-packages/nibabel/tests/data');
export const nicomData = join(root, '.venv/lib/python3.11/site-packages/nibabel/nicom/tests/data');
export const pydicomData = join(root, '.venv/lib/python3.11/site-packages/pydicom/data/test_files');

export type OracleKind = 'nifti' | 'dicom' | 'parrec' | 'parrec-fp';

export interface OracleImage {
  dims: number[];
  affine: number[];
  zooms: number[];
  tr?: number;
  datatype?: number;
  data?: Float32Array;
}

export function runOracle(args: string[]): string {
  // PYTHONPATH: this checkout's models/ wins over whichever checkout the venv's editable install points at
  const env = { ...process.env, PYTHONPATH: join(root, 'models') };
  const r = spawnSync(python, ['-W', 'ignore', '-m', 'mindsemantix.oracles.nib_read', ...args], {
    encoding: 'utf8',
    cwd: root,
    env,
  });
  if (r.status !== 0) throw new Error(`oracle ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** nibabel's reading of files ('nifti' or 'dicom') in one Python start, with voxels when withData. */
export function nibReadMany(kind: OracleKind, paths: string[], withData = true): (OracleImage & { error?: string })[] {
  const dir = mkdtempSync(join(tmpdir(), 'nibread-'));
  try {
    const out = JSON.parse(
      runOracle(withData ? [kind, ...paths, '--raw-dir', dir] : [kind, ...paths]),
    ) as (OracleImage & { error?: string })[];
    if (withData) {
      out.forEach((o, i) => {
        if (o.error) return;
        const b = readFileSync(join(dir, `${i}.f32`));
        o.data = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function nibRead(kind: OracleKind, path: string, withData = true): OracleImage {
  const [r] = nibReadMany(kind, [path], withData);
  if (r.error) throw new Error(`nibabel cannot read ${path}: ${r.error}`);
  return r;
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) {
      if (!(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return Infinity;
    } else if (d > m) m = d;
  }
  return m;
}

function invert4(m: number[]): number[] {
  const a = [0, 1, 2, 3].map((r) => [...m.slice(4 * r, 4 * r + 4), ...[0, 1, 2, 3].map((c) => (c === r ? 1 : 0))]);
  for (let c = 0; c < 4; c++) {
    let piv = c;
    for (let r = c + 1; r < 4; r++) if (Math.abs(a[r][c]) > Math.abs(a[piv][c])) piv = r;
    [a[c], a[piv]] = [a[piv], a[c]];
    const d = a[c][c];
    for (let j = 0; j < 8; j++) a[c][j] /= d;
    for (let r = 0; r < 4; r++) {
      if (r === c) continue;
      const f = a[r][c];
      for (let j = 0; j < 8; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.flatMap((row) => row.slice(4));
}

function mul4(a: number[], b: number[]): number[] {
  const out = new Array<number>(16).fill(0);
  for (let r = 0; r < 4; r++)
    for (let c = 0; c < 4; c++) for (let k = 0; k < 4; k++) out[4 * r + c] += a[4 * r + k] * b[4 * k + c];
  return out;
}

/**
 * Re-indexes another reader's image (its own voxel order, RAS+ affine) onto our grid: the voxel map inv(ours)·theirs
 * must round to a signed axis permutation; returns their voxels in our order and their affine expressed for our
 * voxel order, so both can be compared element by element.
 */
export function alignTo(
  ours: { dims: number[]; affine: number[] },
  theirs: { dims: number[]; affine: number[]; data?: Float32Array },
): { affine: number[]; data?: Float32Array; permutation: number[] } {
  const m = mul4(invert4(ours.affine), theirs.affine);
  const p = m.map((v) => Math.round(v) + 0); // + 0 turns -0 into 0
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) {
      if (Math.abs(m[4 * r + c] - p[4 * r + c]) > 0.05)
        throw new Error(
          `the two voxel grids are not axis permutations of each other (voxel map ${m.map((v) => v.toFixed(3))})`,
        );
    }
  }
  const affine = mul4(theirs.affine, invert4(p));
  let data: Float32Array | undefined;
  if (theirs.data) {
    const [X, Y, Z] = ours.dims;
    const [a, b, c] = theirs.dims;
    if (a * b * c !== X * Y * Z) throw new Error(`voxel counts differ: ${theirs.dims} vs ${ours.dims}`);
    data = new Float32Array(X * Y * Z);
    for (let k = 0; k < c; k++)
      for (let j = 0; j < b; j++)
        for (let i = 0; i < a; i++) {
          const x = p[0] * i + p[1] * j + p[2] * k + p[3];
          const y = p[4] * i + p[5] * j + p[6] * k + p[7];
          const z = p[8] * i + p[9] * j + p[10] * k + p[11];
          if (x < 0 || y < 0 || z < 0 || x >= X || y >= Y || z >= Z)
            throw new Error(`voxel (${i},${j},${k}) maps outside our grid`);
          data[x + X * (y + Y * z)] = theirs.data[i + a * (j + b * k)];
        }
  }
  return { affine, data, permutation: p };
}
