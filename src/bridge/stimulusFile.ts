// Finds and reads the stimulus image an events row names (stim_file), so that senders carry the image itself to the
// server (which cannot open a path on the sender's machine). A missing or unusable image never stops a sender: the
// event goes without it, with one warning per file.
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { StimulusImage } from '../core/types.js';
import { inspectImage, MAX_INLINE_IMAGE_BYTES } from '../protocol/inlineImage.js';

type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

/** How many folders above the events TSV a relative stim_file may live (func/ → ses-/ → sub-/ → dataset root). */
const LEVELS_UP = 3;
/** How long a stim_file that was not found is not looked for again (ms). */
export const RETRY_MS = 1000;
/** Longest side of an image shrunk to fit the inline limit. */
const FIT_SIDE = 512;

/** stim_file relative to the events TSV's folder or one of the folders above it (BIDS puts stimuli/ at the root). */
export function resolveStimulusFile(stimFile: string, eventsFile: string): string | undefined {
  if (isAbsolute(stimFile)) return isFile(stimFile) ? stimFile : undefined;
  let dir = dirname(eventsFile);
  for (let up = 0; up <= LEVELS_UP; up++) {
    const p = join(dir, stimFile);
    if (isFile(p)) return p;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
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
  if (size > MAX_INLINE_IMAGE_BYTES) throw new Error(`${path} is ${Math.round(size / 1024)} KiB, above the ${MAX_INLINE_IMAGE_BYTES / 1024} KiB inline limit`);
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
      jpeg = await sharp(path, { limitInputPixels: 100e6 }).rotate().resize(FIT_SIDE, FIT_SIDE, { fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' }).jpeg({ quality: 85 }).toBuffer();
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

  constructor(private readonly log?: Log) {}

  /** The image of a stim_file, shrunk to the inline limits when it does not fit as it is (cached per file). */
  load(stimFile: string | undefined, eventsFile: string): Promise<StimulusImage | undefined> {
    const path = this.resolve(stimFile, eventsFile);
    if (!path) return Promise.resolve(undefined);
    let p = this.fitted.get(path);
    if (!p) {
      p = fitStimulusFile(path).catch((e: unknown) => { this.warn(e); return undefined; });
      this.fitted.set(path, p);
    }
    return p;
  }

  private resolve(stimFile: string | undefined, eventsFile: string): string | undefined {
    if (!stimFile) return undefined;
    const key = `${eventsFile}\n${stimFile}`;
    const miss = this.missing.get(key);
    if (miss !== undefined && Date.now() - miss < RETRY_MS) return undefined;
    const path = resolveStimulusFile(stimFile, eventsFile);
    if (path) {
      this.missing.delete(key);
      return path;
    }
    if (miss === undefined) this.log?.('warn', `stimulus ${stimFile} named in ${eventsFile} is not next to it (nor up to ${LEVELS_UP} folders above); its events are sent without the image until it appears`);
    this.missing.set(key, Date.now());
    return undefined;
  }

  private warn(e: unknown): void {
    this.log?.('warn', `stimulus image not sent: ${(e as Error).message}; its events are sent without it`);
  }
}
