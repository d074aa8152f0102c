// Finds and reads the stimulus image an events row names (stim_file), so that senders carry the image itself to the
// server (which cannot open a path on the sender's machine). A missing or unusable image never stops a sender: the
// event goes without it, with one warning per file.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { StimulusImage } from '../core/types.js';
import { inspectImage, MAX_INLINE_IMAGE_BYTES } from '../protocol/inlineImage.js';

type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

/** How many folders above the events TSV a relative stim_file may live (func/ → ses-/ → sub-/ → dataset root). */
const LEVELS_UP = 3;
/** How long a stim_file that was not found is not looked for again (ms). */
export const RETRY_MS = 1000;
/** Longest side of an image shrunk to fit the inline limit. */
const FIT_SIDE = 512;

/**
 * stim_file relative to the events TSV's folder or one of the folders above it (BIDS puts stimuli/ at the root).
 * With `root` (replay: the dataset being replayed), the events file is data from elsewhere (a recording holds what
 * a sender named): only relative paths without `..` whose real location is inside `root` are used, so a replay
 * never reads and sends a file from elsewhere on the machine.
 */
export function resolveStimulusFile(stimFile: string, eventsFile: string, root?: string): string | undefined {
  if (root !== undefined && !isConfinedPath(stimFile)) return undefined;
  if (isAbsolute(stimFile)) return isFile(stimFile) ? stimFile : undefined;
  let dir = dirname(eventsFile);
  for (let up = 0; up <= LEVELS_UP; up++) {
    const p = join(dir, stimFile);
    if (isFile(p) && (root === undefined || isInside(p, root))) return p;
    const parent = dirname(dir);
    if (parent === dir || (root !== undefined && !isInside(parent, root))) break;
    dir = parent;
  }
  return undefined;
}

/** Relative, no `..` segment, no drive letter. */
function isConfinedPath(p: string): boolean {
  return !isAbsolute(p) && !/^[A-Za-z]:/.test(p) && !p.split(/[\\/]/).includes('..');
}

/** `p`'s real location (symlinks followed) is `root` or below it. */
function isInside(p: string, root: string): boolean {
  try {
    const rel = relative(realpathSync(root), realpathSync(p));
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  } catch {
    return false;
  }
}

/** The BIDS dataset a replayed folder belongs to: the folder itself or the nearest one above (≤ 2 levels: a session
 * or subject folder) holding dataset_description.json; else the folder itself. */
export function datasetRoot(folder: string): string {
  let dir = resolve(folder);
  for (let up = 0; up <= 2; up++) {
    if (existsSync(join(dir, 'dataset_description.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return resolve(folder);
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The file's bytes when they are a PNG/JPEG/WebP within the inline limits; throws an Error saying why not. */
export function readStimulusFile(path: string): StimulusImage {
  const size = statSync(path).size;
  if (size > MAX_INLINE_IMAGE_BYTES)
    throw new Error(
      `${path} is ${Math.round(size / 1024)} KiB, above the ${MAX_INLINE_IMAGE_BYTES / 1024} KiB inline limit`,
    );
  const buf = readFileSync(path);
  try {
    return inspectImage(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** As readStimulusFile, but an image that does not fit (too large, another format) is re-encoded as a JPEG with sharp. */
export async function fitStimulusFile(path: string): Promise<StimulusImage> {
  try {
    return readStimulusFile(path);
  } catch (first) {
    const { default: sharp } = await import('sharp'); // loaded only when needed: most stimuli fit as they are
    let jpeg: Buffer;
    try {
      jpeg = await sharp(path, { limitInputPixels: 100e6 })
        .rotate()
        .resize(FIT_SIDE, FIT_SIDE, { fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' })
        .jpeg({ quality: 85 })
        .toBuffer();
    } catch (e) {
      throw new Error(`${(first as Error).message}, and it could not be re-encoded (${(e as Error).message})`);
    }
    return inspectImage(new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength));
  }
}

/** Per sender: resolves each stim_file once, caches the image (stimuli repeat across trials), warns once per file. */
export class StimulusFiles {
  private readonly fitted = new Map<string, Promise<StimulusImage | undefined>>();
  /** stim_files not found, with when they were last looked for: looked for again after RETRY_MS (a presentation
   * program may copy a stimulus in after writing its row); each is warned about once. */
  private readonly missing = new Map<string, number>();
  /** stim_files that point outside `root`: refused once, with one warning. */
  private readonly refused = new Set<string>();

  /** `root`: stimulus files must lie inside it (see resolveStimulusFile); the bridge, reading the local stimulus
   * program's own events file, passes none. */
  constructor(
    private readonly log?: Log,
    private readonly root?: string,
  ) {}

  /** The image of a stim_file, shrunk to the inline limits when it does not fit as it is (cached per file). */
  load(stimFile: string | undefined, eventsFile: string): Promise<StimulusImage | undefined> {
    const path = this.resolve(stimFile, eventsFile);
    if (!path) return Promise.resolve(undefined);
    let p = this.fitted.get(path);
    if (!p) {
      p = fitStimulusFile(path).catch((e: unknown) => {
        this.warn(e);
        return undefined;
      });
      this.fitted.set(path, p);
    }
    return p;
  }

  private resolve(stimFile: string | undefined, eventsFile: string): string | undefined {
    if (!stimFile) return undefined;
    const key = `${eventsFile}\n${stimFile}`;
    const miss = this.missing.get(key);
    if (miss !== undefined && Date.now() - miss < RETRY_MS) return undefined;
    if (this.root !== undefined && !isConfinedPath(stimFile)) {
      if (!this.refused.has(key))
        this.log?.(
          'warn',
          `stimulus ${stimFile} named in ${eventsFile} is outside the dataset (absolute or with ..); it is not read, its events are sent without the image`,
        );
      this.refused.add(key);
      return undefined;
    }
    const path = resolveStimulusFile(stimFile, eventsFile, this.root);
    if (path) {
      this.missing.delete(key);
      return path;
    }
    if (miss === undefined)
      this.log?.(
        'warn',
        `stimulus ${stimFile} named in ${eventsFile} is not next to it (nor up to ${LEVELS_UP} folders above${this.root !== undefined ? `, inside ${this.root}` : ''}); its events are sent without the image until it appears`,
      );
    this.missing.set(key, Date.now());
    return undefined;
  }

  private warn(e: unknown): void {
    this.log?.('warn', `stimulus image not sent: ${(e as Error).message}; its events are sent without it`);
  }
}
