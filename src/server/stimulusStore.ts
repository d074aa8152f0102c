// Inline stimulus images received with events, kept in the recording as DIR/stimuli/<id>.<ext> so that the events
// TSV's stim_file points at a real file and a replay of the recording carries the images again.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { StimulusImage } from '../core/types.js';

const EXT: Record<StimulusImage['format'], string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

/**
 * Writes the image (durably, by rename) unless the same bytes are already there; returns stim_file, relative to
 * `root`. The stimulus id may hold any character: unsafe ones become "_", and a name already taken by other bytes
 * (a changed stimulus, or two ids that clean to the same name) gets a content hash, so nothing is overwritten.
 */
export async function storeStimulusImage(root: string, stimulusId: string, img: StimulusImage): Promise<string> {
  const dir = join(root, 'stimuli');
  await mkdir(dir, { recursive: true });
  const clean = stimulusId.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_').slice(0, 120);
  const hash = createHash('sha256').update(img.bytes).digest('hex').slice(0, 12);
  for (const name of [`${clean}.${EXT[img.format]}`, `${clean}-${hash}.${EXT[img.format]}`]) {
    const existing = await readFile(join(dir, name)).catch(() => undefined);
    if (existing?.equals(img.bytes)) return `stimuli/${name}`;
    if (existing) continue;
    const tmp = join(dir, `.${name}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.write(img.bytes);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
    return `stimuli/${name}`;
  }
  throw new Error(`stimuli/${clean}-${hash}.${EXT[img.format]} exists with other content`); // a sha256 prefix collision
}
