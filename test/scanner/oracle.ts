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

export interface OracleImage {
  dims: number[];
  affine: number[];
  zooms: number[];
  tr?: number;
  datatype?: number;
  data?: Float32Array;
}

export function runOracle(args: string[]): string {
  const r = spawnSync(python, ['-W', 'ignore', '-m', 'mindsemantix.oracles.nib_read', ...args], { encoding: 'utf8', cwd: root });
  if (r.status !== 0) throw new Error(`oracle ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** nibabel's reading of files ('nifti' or 'dicom') in one Python start, with voxels when withData. */
export function nibReadMany(kind: 'nifti' | 'dicom', paths: string[], withData = true): (OracleImage & { error?: string })[] {
  const dir = mkdtempSync(join(tmpdir(), 'nibread-'));
  try {
    const out = JSON.parse(runOracle(withData ? [kind, ...paths, '--raw-dir', dir] : [kind, ...paths])) as (OracleImage & { error?: string })[];
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

export function nibRead(kind: 'nifti' | 'dicom', path: string, withData = true): OracleImage {
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
