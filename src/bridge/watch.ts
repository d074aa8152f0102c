// Watches a scanner export folder: file-system events for speed plus polling every `pollMs` (network shares send no
// events). A file is proven complete by parsing it (src/scanner); while incomplete it is retried every `retryMs`.
// Never a fixed settle timer.
import { watch, readdirSync, statSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import {
  readScannerFile,
  nameIndex,
  nameSeries,
  SliceAssembler,
  type ScannerFormat,
  type ScannerVolume,
} from '../scanner/index.js';
import { readNewNiftiVolumes } from './growingNifti.js';

export interface WatchedVolume {
  path: string;
  volume: ScannerVolume;
  /** Position of the volume within its file (growing 4-D NIfTI), else 0. */
  positionInFile: number;
  /** From a 4-D NIfTI that may still grow: its volumes are indexed by position in the file. */
  growing: boolean;
  /** ms: when the file (or its growth) was first noticed, and when the volume was proven complete. */
  seenAt: number;
  readAt: number;
  /** The run this volume belongs to, when the source knows better than the series number (an MRD measurement). */
  runKey?: string;
}

export interface WatchOptions {
  dir: string;
  format?: ScannerFormat;
  pollMs?: number;
  retryMs?: number;
  /** Use file-system events as well as polling (default true; false behaves like a network share). */
  fsEvents?: boolean;
  /** Files whose name matches are ignored (the events TSV, dotfiles, partial-download suffixes, Philips REC pixels). */
  ignore?: RegExp;
  /** Stop retrying a file that stays incomplete this long (ms); it is looked at again when it changes. Default: never. */
  giveUpMs?: number;
  /** The series of every volume in this folder (an XTC series folder's number), over what the files say. */
  seriesNumber?: number;
  onVolume(v: WatchedVolume): void;
  /** A file that will never decode: reported once per size. */
  onInvalid?(path: string, reason: string): void;
  /** A file that stayed incomplete for giveUpMs. */
  onGiveUp?(path: string, reason: string): void;
  /** Every name seen in the folder, for others (the events TSV follower). */
  onFile?(path: string): void;
}

interface Tracked {
  size: number;
  mtimeMs: number;
  seenAt: number;
  /** Volumes already handed out (growing files). */
  sent: number;
  final: boolean;
  growing?: boolean;
  invalidAt?: number;
  retry?: NodeJS.Timeout;
  /** ms: when the current run of incomplete reads began. */
  incompleteSince?: number;
  /** Given up while incomplete at this size and mtime: looked at again only when either changes. */
  gaveUp?: { size: number; mtimeMs: number };
}

// A Philips .REC holds only pixels: it is read through its .PAR.
const DEFAULT_IGNORE = /(^\.|\.tsv$|\.json$|\.txt$|\.tmp$|\.part$|~$|\.rec$)/i;

export class FolderWatcher {
  private files = new Map<string, Tracked>();
  private fsw: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private stopped = false;
  private assembler = new SliceAssembler();
  constructor(private readonly o: WatchOptions) {}

  start(): void {
    if (this.o.fsEvents !== false)
      try {
        this.fsw = watch(this.o.dir, { persistent: false }, (_ev, name) => {
          if (name) this.consider(name.toString());
        });
        this.fsw.on('error', () => {
          this.fsw?.close();
          this.fsw = undefined;
        }); // polling carries on
      } catch {
        /* no events on this file system: polling only */
      }
    this.scan();
    this.poll = setInterval(() => this.scan(), this.o.pollMs ?? 50);
  }

  stop(): void {
    this.stopped = true;
    this.fsw?.close();
    if (this.poll) clearInterval(this.poll);
    for (const t of this.files.values()) if (t.retry) clearTimeout(t.retry);
  }

  private scan(): void {
    let names: string[];
    try {
      names = readdirSync(this.o.dir);
    } catch {
      return; // folder not there (yet): keep polling
    }
    // series first (Siemens 001_<series>_<instance>), then the volume number: a busy folder's series come one after
    // another rather than interleaved, so no run is ended while its files are still waiting
    names.sort(
      (a, b) =>
        (nameSeries(a) ?? -1) - (nameSeries(b) ?? -1) ||
        (nameIndex(a) ?? Infinity) - (nameIndex(b) ?? Infinity) ||
        a.localeCompare(b),
    );
    for (const n of names) this.consider(n);
  }

  private consider(name: string): void {
    if (this.stopped) return;
    const path = join(this.o.dir, name);
    this.o.onFile?.(path);
    if ((this.o.ignore ?? DEFAULT_IGNORE).test(name)) return;
    const known = this.files.get(path);
    if (known && (known.final || known.retry)) return; // no stat for finished files: folders hold thousands
    let st;
    try {
      st = statSync(path);
    } catch {
      return;
    }
    if (!st.isFile()) return;
    let t = this.files.get(path);
    if (!t) {
      t = { size: -1, mtimeMs: -1, seenAt: Date.now(), sent: 0, final: false };
      this.files.set(path, t);
    }
    if (t.final || t.retry) return;
    if (st.size === t.size && st.mtimeMs === t.mtimeMs) return; // nothing new since the last attempt
    if (t.gaveUp && st.size === t.gaveUp.size && st.mtimeMs === t.gaveUp.mtimeMs) return; // still the stuck file
    t.gaveUp = undefined;
    if (t.sent > 0 && st.size !== t.size) t.seenAt = Date.now(); // a growing file grew
    this.attempt(path, t);
  }

  private attempt(path: string, t: Tracked): void {
    t.retry = undefined;
    if (this.stopped) return;
    let st;
    try {
      st = statSync(path);
    } catch {
      this.files.delete(path);
      return;
    }
    if (t.growing) {
      // After the first read, a growing 4-D file is read by byte range: only the new volumes.
      let vols: ScannerVolume[] | undefined;
      try {
        vols = readNewNiftiVolumes(path, t.sent);
      } catch {
        vols = undefined;
      }
      if (vols) {
        t.size = st.size;
        t.mtimeMs = st.mtimeMs;
        const readAt = Date.now();
        for (const v of vols)
          this.o.onVolume({ path, volume: v, positionInFile: t.sent++, growing: true, seenAt: t.seenAt, readAt });
        return;
      }
    }
    const r = readScannerFile(path, { format: this.o.format ?? 'auto' });
    if (r.status === 'incomplete') {
      const now = Date.now();
      t.incompleteSince ??= now;
      if (this.o.giveUpMs !== undefined && now - t.incompleteSince >= this.o.giveUpMs) {
        // a stuck file (the scanner died mid-write, a corrupt length): stop polling it, say so once
        t.gaveUp = { size: st.size, mtimeMs: st.mtimeMs };
        t.size = -1;
        t.incompleteSince = undefined;
        this.o.onGiveUp?.(path, r.reason);
        return;
      }
      t.size = -1; // force another look
      t.retry = setTimeout(() => this.attempt(path, t), this.o.retryMs ?? 25);
      return;
    }
    t.incompleteSince = undefined;
    t.size = st.size;
    t.mtimeMs = st.mtimeMs;
    if (r.status === 'invalid') {
      if (t.invalidAt !== st.size) this.o.onInvalid?.(path, r.reason);
      t.invalidAt = st.size;
      return;
    }
    const readAt = Date.now();
    const vols: ScannerVolume[] = [...r.volumes];
    for (const s of r.slices ?? []) vols.push(...this.assembler.add(s));
    if (this.o.seriesNumber !== undefined) for (const v of vols) v.seriesNumber = this.o.seriesNumber;
    // One volume per file is final; a multi-volume NIfTI may still grow (a scanner appending to a 4-D file).
    const growing = r.format === 'nifti' && (r.volumes.length > 1 || nameIndex(path) === undefined);
    for (let i = t.sent; i < vols.length; i++)
      this.o.onVolume({ path, volume: vols[i], positionInFile: growing ? i : 0, growing, seenAt: t.seenAt, readAt });
    if (growing) {
      t.sent = vols.length;
      t.growing = true;
    } else t.final = true;
  }
}
