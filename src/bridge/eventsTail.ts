// Follows a BIDS events TSV that presentation software appends to; hands out each complete new row once.
import { openSync, readSync, fstatSync, closeSync } from 'node:fs';
import type { StimulusEvent } from '../core/types.js';
import { parseEventsTsv } from '../bids/bidsRun.js';

export class EventsTail {
  private offset = 0;
  private header: string | undefined;
  private rows = 0;
  constructor(readonly path: string) {}

  /** New complete rows since the last call (a half-written last line waits for its newline). */
  poll(run: string): StimulusEvent[] {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return [];
    }
    try {
      const size = fstatSync(fd).size;
      if (size < this.offset) {
        this.offset = 0;
        this.header = undefined;
        this.rows = 0;
      } // truncated and rewritten
      if (size === this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      readSync(fd, buf, 0, buf.length, this.offset);
      const text = buf.toString('utf8');
      const end = text.lastIndexOf('\n');
      if (end < 0) return [];
      this.offset += Buffer.byteLength(text.slice(0, end + 1));
      const lines = text.slice(0, end).split(/\r?\n/);
      if (this.header === undefined) this.header = lines.shift();
      if (!this.header || lines.length === 0) return [];
      const events = parseEventsTsv([this.header, ...lines].join('\n'), run, this.path);
      for (const e of events) e.trial = this.rows++;
      return events;
    } finally {
      closeSync(fd);
    }
  }
}
