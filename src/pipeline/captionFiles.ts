// Decoded captions and reconstructions recorded beside the BIDS session `serve --record` writes:
//   <record>/derivatives/mindsemantix-decoder/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_captions.tsv
//   <record>/derivatives/mindsemantix-decoder/sub-<id>/ses-<ses>/sub-<id>_ses-<ses>_<run>_recons.tsv
//   <record>/derivatives/mindsemantix-decoder/sub-<id>/ses-<ses>/recon/sub-<id>_ses-<ses>_<run>_trial-<NNN>_recon.<png|webp>
// One captions row per decoded trial, appended as it is decoded, so an interrupted session keeps what was decoded. The
// reconstruction follows its caption (the pipeline generates it afterwards): its file and one recons row
// (trial, stimulus_id, recon_file, recon_ms, or the error) are written when it arrives.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const DERIVATIVE = 'mindsemantix-decoder';
const COLUMNS = [
  'trial',
  'stimulus_id',
  'onset',
  'caption',
  'confidence',
  'token_logprobs',
  'baseline_caption',
  'flags',
  'latency_ms',
  'references',
];
const RECON_COLUMNS = ['trial', 'stimulus_id', 'recon_file', 'recon_ms', 'error'];

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
  references?: string[];
}

export interface RecordedReconstruction {
  subject: string;
  session: string;
  run: string;
  trial: number;
  stimulusId: string;
  image?: Uint8Array;
  imageFormat?: 'png' | 'webp';
  ms?: number;
  /** Why there is no image (the generator failed or was skipped). */
  error?: string;
}

const cell = (v: string | number | undefined): string =>
  v === undefined || v === '' ? 'n/a' : String(v).replace(/[\t\r\n]/g, ' ');

export class CaptionRecorder {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly root: string) {}

  /** Paths for one run's derivatives. */
  paths(
    subject: string,
    session: string,
    run: string,
  ): { dir: string; tsv: string; reconTsv: string; recon: (trial: number, ext: string) => string } {
    const dir = join(this.root, 'derivatives', DERIVATIVE, `sub-${subject}`, `ses-${session}`);
    const stem = `sub-${subject}_ses-${session}_${run}`;
    return {
      dir,
      tsv: join(dir, `${stem}_captions.tsv`),
      reconTsv: join(dir, `${stem}_recons.tsv`),
      recon: (trial, ext) => join(dir, 'recon', `${stem}_trial-${String(trial).padStart(3, '0')}_recon.${ext}`),
    };
  }

  /**
   * Appends one caption (writes are serialised so rows never interleave). A failed write rejects its own promise
   * only: the chain goes on, so the next caption is written once the disk is writable again.
   */
  record(c: RecordedCaption): Promise<void> {
    return this.serialised(() => this.write(c));
  }

  /** Writes a reconstruction's image (when there is one) and its recons row, serialised like the captions. */
  recordReconstruction(r: RecordedReconstruction): Promise<void> {
    return this.serialised(() => this.writeReconstruction(r));
  }

  private serialised(f: () => Promise<void>): Promise<void> {
    const written = this.chain.then(f);
    this.chain = written.catch(() => undefined);
    return written;
  }

  flush(): Promise<void> {
    return this.chain;
  }

  private async write(c: RecordedCaption): Promise<void> {
    const p = this.paths(c.subject, c.session, c.run);
    await mkdir(p.dir, { recursive: true });
    if (!existsSync(p.tsv)) await writeFile(p.tsv, COLUMNS.join('\t') + '\n');
    const row = [
      c.trial,
      c.stimulusId,
      c.onset,
      c.text,
      c.confidence.toFixed(4),
      JSON.stringify(c.tokenLogprobs.map((x) => Number(x.toFixed(4)))),
      c.baseline,
      c.flags.join(','),
      c.latencyMs.toFixed(1),
      c.references ? JSON.stringify(c.references) : undefined,
    ].map(cell);
    await appendFile(p.tsv, row.join('\t') + '\n');
  }

  private async writeReconstruction(r: RecordedReconstruction): Promise<void> {
    const p = this.paths(r.subject, r.session, r.run);
    await mkdir(join(p.dir, 'recon'), { recursive: true });
    let reconRel: string | undefined;
    if (r.image) {
      const file = p.recon(r.trial, r.imageFormat ?? 'png');
      await writeFile(file, r.image);
      reconRel = file.slice(p.dir.length + 1);
    }
    if (!existsSync(p.reconTsv)) await writeFile(p.reconTsv, RECON_COLUMNS.join('\t') + '\n');
    const row = [r.trial, r.stimulusId, reconRel, r.ms?.toFixed(1), r.error].map(cell);
    await appendFile(p.reconTsv, row.join('\t') + '\n');
  }
}
