// Philips XTC layout: the export folder holds one numbered subfolder per series, each receiving one PAR/REC pair per
// dynamic (Dump-0000.par/.rec, ...). Each subfolder is watched like a plain export folder; its number is the series.
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FolderWatcher, type WatchOptions } from './watch.js';
import type { VolumeSource } from './source.js';

/** At most this many series folders are followed at once: a folder with thousands of subfolders is not an XTC export. */
const MAX_SERIES_FOLDERS = 256;

export class SeriesFoldersWatcher implements VolumeSource {
  private watchers = new Map<string, FolderWatcher>();
  private poll: NodeJS.Timeout | undefined;
  private warned = false;
  constructor(private readonly o: WatchOptions) {}

  start(): void {
    this.scan();
    this.poll = setInterval(() => this.scan(), this.o.pollMs ?? 50);
  }

  stop(): void {
    if (this.poll) clearInterval(this.poll);
    for (const w of this.watchers.values()) w.stop();
  }

  private scan(): void {
    let names: string[];
    try {
      names = readdirSync(this.o.dir);
    } catch {
      return; // not there yet
    }
    // series in number order, so an earlier series is read (and its run ended) before a later one begins
    const series = names
      .map((n) => ({ n, num: /(\d{1,9})$/.exec(n)?.[1] }))
      .filter((x) => x.num !== undefined && !this.watchers.has(x.n))
      .sort((a, b) => Number(a.num) - Number(b.num));
    for (const { n, num } of series) {
      const path = join(this.o.dir, n);
      try {
        if (!statSync(path).isDirectory()) continue;
      } catch {
        continue;
      }
      if (this.watchers.size >= MAX_SERIES_FOLDERS) {
        if (!this.warned)
          this.o.onInvalid?.(
            path,
            `more than ${MAX_SERIES_FOLDERS} series folders; later ones are not followed (move old series out of ${basename(this.o.dir)}).`,
          );
        this.warned = true;
        return;
      }
      const w = new FolderWatcher({ ...this.o, dir: path, seriesNumber: Number(num) });
      this.watchers.set(n, w);
      w.start();
    }
  }
}
