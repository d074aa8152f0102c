// Writes a multi-dynamic PAR/REC export as Philips XTC does: one PAR/REC pair per dynamic (Dump-0000.par/.rec),
// each PAR listing that dynamic's slices with REC indices from 0, the general information unchanged.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface XtcDump {
  par: string;
  rec: Uint8Array;
}

export function xtcDumps(parPath: string): XtcDump[] {
  const par = readFileSync(parPath, 'latin1');
  const rec = readFileSync(parPath.replace(/\.PAR$/i, '.REC'));
  const lines = par.split('\n');
  const isImage = (l: string) => /^\s*\d+\s+\d+\s+\d+\s/.test(l);
  const images = lines.filter(isImage).map((l) => l.trim().split(/\s+/));
  const dynamics = [...new Set(images.map((t) => Number(t[2])))].sort((a, b) => a - b);
  const bytes = Number(images[0][9]) * Number(images[0][10]) * (Number(images[0][7]) / 8);
  return dynamics.map((dyn) => {
    const mine = images.filter((t) => Number(t[2]) === dyn);
    const parts: Uint8Array[] = [];
    let k = 0;
    const out = lines.flatMap((l) => {
      if (!isImage(l)) return [l];
      const t = l.trim().split(/\s+/);
      if (Number(t[2]) !== dyn) return [];
      parts.push(rec.subarray(Number(t[6]) * bytes, (Number(t[6]) + 1) * bytes));
      // replace only the REC index column, keeping the line's layout
      const cols = l.split(/(\s+)/);
      const idx = cols[0] === '' ? 2 + 6 * 2 : 6 * 2;
      cols[idx] = String(k++);
      return [cols.join('')];
    });
    if (mine.length !== parts.length) throw new Error('split went wrong');
    return { par: out.join('\n'), rec: Buffer.concat(parts) };
  });
}

/** Writes the dumps into DIR as Dump-0000.par/.rec …; returns the PAR paths. */
export function splitXtc(parPath: string, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  return xtcDumps(parPath).map((d, i) => {
    const stem = join(dir, `Dump-${String(i).padStart(4, '0')}`);
    writeFileSync(`${stem}.rec`, d.rec);
    writeFileSync(`${stem}.par`, d.par, 'latin1');
    return `${stem}.par`;
  });
}
