// Shared helpers for the streams tests: the Python oracle (numpy/scipy/nibabel in .venv) and raw float files.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = new URL('../../../', import.meta.url).pathname;
export const python = join(root, '.venv', 'bin', 'python');
export const nibabelData = join(root, '.venv', 'lib', 'python3.11', 'site-packages', 'nibabel', 'tests', 'data');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `msx-${prefix}-`));
}

/** Runs `python -m mindsemantix.baselines.oracle <args>`; throws with stderr on failure. */
export function oracle(args: string[]): void {
  const r = spawnSync(python, ['-m', 'mindsemantix.baselines.oracle', ...args], {
    encoding: 'utf8',
    cwd: root,
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`oracle ${args[0]} failed: ${r.stderr || r.error?.message}`);
}

export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function readF64(path: string): Float64Array {
  const b = readFileSync(path);
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function writeF32(path: string, a: ArrayLike<number>): void {
  writeFileSync(path, Buffer.from(Float32Array.from(a).buffer));
}
