// Inline stimulus images received with events, kept in the recording as DIR/stimuli/<id>.<ext> so that the events
// TSV's stim_file points at a real file and a replay of the recording carries the images again.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { StimulusImage } from '../core/types.js';
import { syncDir, writeTempFile, type RecordingFs } from './durableFile.js';

const EXT: Record<StimulusImage['format'], string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

/**
 * Writes the image (durably: fsynced, linked into place, directory fsynced) unless the same bytes are already there; returns stim_file, relative to
 * `root`. The stimulus id may hold any character: unsafe ones become "_", and a name already taken by other bytes
 * (a changed stimulus, or two ids that clean to the same name) gets a content hash, so nothing is overwritten.
 */
export async function storeStimulusImage(
  root: string,
  stimulusId: string,
  img: StimulusImage,
  fs: RecordingFs = fsp,
): Promise<string> {
  const dir = join(root, 'stimuli');
  await fs.mkdir(dir, { recursive: true });
  const clean = stimulusId
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 120);
  const hash = createHash('sha256').update(img.bytes).digest('hex').slice(0, 12);
  for (const name of [`${clean}.${EXT[img.format]}`, `${clean}-${hash}.${EXT[img.format]}`]) {
    const existing = await fs.readFile(join(dir, name)).catch(() => undefined);
    if (existing?.equals(img.bytes)) return `stimuli/${name}`;
    if (existing) continue;
    // Runs record concurrently: each write has its own temp file, linked into place only if the name is still free
    // (link never replaces), so two writers under one name can neither collide nor overwrite each other's bytes.
    const tmp = await writeTempFile(fs, join(dir, name), img.bytes);
    try {
      await fs.link(tmp, join(dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const now = await fs.readFile(join(dir, name));
      if (now.equals(img.bytes)) return `stimuli/${name}`;
      continue;
    } finally {
      await fs.unlink(tmp).catch(() => undefined);
    }
    await syncDir(fs, dir);
    return `stimuli/${name}`;
  }
  throw new Error(`stimuli/${clean}-${hash}.${EXT[img.format]} exists with other content`); // a sha256 prefix collision
}
