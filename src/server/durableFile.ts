// Durable file writes for the recording: data fsynced before it is renamed into place, the directory fsynced after,
// so that an acknowledged write survives a power cut, not only a crash of the process.
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** The file-system calls a recording makes (node:fs/promises); a test passes one that fails on demand. */
export type RecordingFs = Pick<
  typeof fsp,
  'open' | 'readFile' | 'rename' | 'link' | 'unlink' | 'mkdir' | 'stat' | 'truncate'
>;

/** A rename is durable only once its directory is synced. */
export async function syncDir(fs: RecordingFs, dir: string): Promise<void> {
  const d = await fs.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** A temp file beside `path`, named uniquely (concurrent writers never share one), written and fsynced. */
export async function writeTempFile(fs: RecordingFs, path: string, data: string | Uint8Array): Promise<string> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return tmp;
}

/** Writes `path` durably and atomically: a temp file, fsynced, renamed over it, then the directory fsynced. */
export async function writeFileDurably(fs: RecordingFs, path: string, data: string | Uint8Array): Promise<void> {
  const tmp = await writeTempFile(fs, path, data);
  await fs.rename(tmp, path);
  await syncDir(fs, dirname(path));
}
