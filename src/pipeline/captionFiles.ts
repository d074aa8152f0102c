// Decoded captions and reconstructions recorded beside the BIDS session `serve --record` writes:
//   <record>/derivatives/mindsemantix-decoder/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_captions.tsv
//   <record>/derivatives/mindsemantix-decoder/sub-<id>/ses-<ses>/recon/sub-<id>_ses-<ses>_<run>_trial-<NNN>_recon.<png|webp>
// One TSV row per decoded trial, appended as it is decoded, so an interrupted session keeps what was decoded.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const DERIVATIVE = 'mindsemantix-decoder';
const COLUMNS = ['trial', 'stimulus_id', 'onset', 'caption', 'confidence', 'token_logprobs', 'baseline_caption', 'flags', 'latency_ms', 'recon_file', 'references'];

export interface RecordedCaption {
  subject: string;
  session: string;
  run: string;
  trial: number;
  stimulusId: string;
  onset: number;
  text: string;
  confidence: number;
  tokenLogprobs: number[];
  baseline?: string;
  flags: string[];
  latencyMs: number;
  image?: Uint8Array;
  imageFormat?: 'png' | 'webp';
  references?: string[];
}

const cell = (v: string | number | undefined): string => (v === undefined || v === '' ? 'n/a' : String(v).replace(/[\t\r\n]/g, ' '));

export class CaptionRecorder {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly root: string) {}

  /** Paths for one run's derivatives. */
  paths(subject: string, session: string, run: string): { dir: string; tsv: string; recon: (trial: number, ext: string) => string } {
    const dir = join(this.root, 'derivatives', DERIVATIVE, `sub-${subject}`, `ses-${session}`);
    const stem = `sub-${subject}_ses-${session}_${run}`;
    return {
      dir,
      tsv: join(dir, `${stem}_captions.tsv`),
      recon: (trial, ext) => join(dir, 'recon', `${stem}_trial-${String(trial).padStart(3, '0')}_recon.${ext}`),
    };
  }

  /**
   * Appends one caption (writes are serialised so rows never interleave). A failed write rejects its own promise
   * only: the chain goes on, so the next caption is written once the disk is writable again.
   */
  record(c: RecordedCaption): Promise<void> {
    const written = this.chain.then(() => this.write(c));
    this.chain = written.catch(() => undefined);
    return written;
  }

  flush(): Promise<void> {
    return this.chain;
  }

  private async write(c: RecordedCaption): Promise<void> {
    const p = this.paths(c.subject, c.session, c.run);
    await mkdir(join(p.dir, 'recon'), { recursive: true });
    let reconRel: string | undefined;
    if (c.image) {
      const file = p.recon(c.trial, c.imageFormat ?? 'png');
      await writeFile(file, c.image);
      reconRel = file.slice(p.dir.length + 1);
    }
    if (!existsSync(p.tsv)) await writeFile(p.tsv, COLUMNS.join('\t') + '\n');
    const row = [
      c.trial, c.stimulusId, c.onset, c.text, c.confidence.toFixed(4), JSON.stringify(c.tokenLogprobs.map((x) => Number(x.toFixed(4)))),
      c.baseline, c.flags.join(','), c.latencyMs.toFixed(1), reconRel, c.references ? JSON.stringify(c.references) : undefined,
    ].map(cell);
    await appendFile(p.tsv, row.join('\t') + '\n');
  }
}
