// A small BIDS session in the functional space of a bundle's ROI mask (for tests that need a session that fits the
// tiny random bundle): smooth anatomy plus a stimulus-locked response in the ROI and noise, events with reference
// captions and stimulus images. Layout as docs/ARCHITECTURE.md "Simulated sessions".
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { decodeNifti, encodeNifti1Series } from '../../src/scanner/nifti.js';

const CAPTIONS = [
  [
    'a red car parked on a street',
    'a small red car by the curb',
    'a car parked beside the road',
    'a red vehicle on a city street',
    'a parked red car',
  ],
  [
    'a dog running on the grass',
    'a brown dog runs across a lawn',
    'a dog playing in a field',
    'a happy dog on green grass',
    'a dog running outside',
  ],
  [
    'a bowl of fruit on a table',
    'apples and bananas in a bowl',
    'a fruit bowl on a wooden table',
    'fresh fruit in a white bowl',
    'a bowl full of fruit',
  ],
  [
    'a person riding a bicycle',
    'a man rides a bike down the road',
    'a cyclist on a city street',
    'someone riding a bicycle',
    'a person on a bike',
  ],
];
const COLORS: [number, number, number][] = [
  [200, 40, 40],
  [60, 160, 60],
  [230, 180, 40],
  [60, 90, 200],
];

export interface SyntheticSession {
  dir: string;
  subject: string;
  run: string;
  volumes: number;
  trials: number;
  tr: number;
}

/**
 * `motionFrom`: from this volume on, the head sits one voxel further along x (a step the motion corrector must undo).
 * `missing`: volume indices the sidecar records as never received (MissingVolumes), as a recording with gaps has.
 */
export async function writeSyntheticSession(
  dir: string,
  maskPath: string,
  opts: {
    subject?: string;
    session?: string;
    trials?: number;
    tr?: number;
    seed?: number;
    motionFrom?: number;
    missing?: number[];
  } = {},
): Promise<SyntheticSession> {
  const subject = opts.subject ?? 'sim01';
  const trials = opts.trials ?? 6;
  const tr = opts.tr ?? 1.5;
  const mask = decodeNifti(new Uint8Array(readFileSync(maskPath)));
  const dims: [number, number, number] = [mask.dims[0], mask.dims[1], mask.dims[2]];
  const n = dims[0] * dims[1] * dims[2];
  let s = (opts.seed ?? 1) >>> 0;
  const rand = () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const onsets = Array.from({ length: trials }, (_, i) => 3 + i * 6);
  const duration = 3;
  const nvol = Math.ceil((onsets[onsets.length - 1] + 12) / tr);
  const anatomy = new Float32Array(n);
  for (let z = 0; z < dims[2]; z++)
    for (let y = 0; y < dims[1]; y++)
      for (let x = 0; x < dims[0]; x++) {
        const i = x + dims[0] * (y + dims[1] * z);
        const r = Math.hypot(x - dims[0] / 2 + 0.5, y - dims[1] / 2 + 0.5, z - dims[2] / 2 + 0.5) / (dims[0] / 2);
        anatomy[i] = 800 * Math.max(0.15, 1 - r * r) + 40 * Math.sin(x * 1.3 + y * 0.7);
      }
  const patterns = CAPTIONS.map(() => Float32Array.from({ length: n }, () => gauss()));
  const hrf = (t: number) =>
    t <= 0 ? 0 : (Math.pow(t, 5) * Math.exp(-t)) / 120 - (Math.pow(t, 15) * Math.exp(-t)) / (6 * 1.3e12);
  const volumes: Int16Array[] = [];
  for (let v = 0; v < nvol; v++) {
    const t = v * tr;
    const vol = new Int16Array(n);
    for (let i = 0; i < n; i++) {
      let sig = anatomy[i] + 4 * gauss();
      if (mask.data[i] > 0)
        onsets.forEach((o, k) => {
          sig += 20 * hrf(t - o) * patterns[k % patterns.length][i];
        });
      vol[i] = Math.round(sig);
    }
    if (opts.motionFrom !== undefined && v >= opts.motionFrom) {
      const moved = new Int16Array(n);
      for (let i = 0; i < n; i++) moved[i] = i % dims[0] === 0 ? vol[i] : vol[i - 1];
      volumes.push(moved);
      continue;
    }
    volumes.push(vol);
  }
  const run = 'task-vision_run-01';
  const ses = opts.session ?? '01';
  const func = join(dir, `sub-${subject}`, `ses-${ses}`, 'func');
  mkdirSync(func, { recursive: true });
  mkdirSync(join(dir, 'stimuli'), { recursive: true });
  const stem = join(func, `sub-${subject}_ses-${ses}_${run}`);
  writeFileSync(`${stem}_bold.nii.gz`, gzipSync(encodeNifti1Series({ dims, affine: mask.affine, tr, volumes })));
  writeFileSync(
    `${stem}_bold.json`,
    JSON.stringify({
      RepetitionTime: tr,
      TaskName: 'vision',
      AcquisitionTimes: Array.from({ length: nvol }, (_, i) => i * tr),
      ...(opts.missing ? { MissingVolumes: opts.missing } : {}),
    }),
  );
  const rows = ['onset\tduration\ttrial_type\tstimulus_id\treferences\tstim_file'];
  const stimRows = ['stimulus_id\tsplit\tcaptions'];
  for (let k = 0; k < CAPTIONS.length; k++) {
    const [r, g, b] = COLORS[k];
    const px = Buffer.alloc(64 * 64 * 3);
    for (let i = 0; i < 64 * 64; i++) {
      const x = i % 64,
        y = Math.floor(i / 64);
      const inShape = (x - 32) ** 2 + (y - 36) ** 2 < (14 + 4 * k) ** 2;
      px[i * 3] = inShape ? r : 230;
      px[i * 3 + 1] = inShape ? g : 230;
      px[i * 3 + 2] = inShape ? b : 235;
    }
    await sharp(px, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(join(dir, 'stimuli', `stim${k}.png`));
    stimRows.push(`stim${k}\ttest\t${JSON.stringify(CAPTIONS[k])}`);
  }
  onsets.forEach((o, i) => {
    const k = i % CAPTIONS.length;
    rows.push(`${o}\t${duration}\tstimulus\tstim${k}\t${JSON.stringify(CAPTIONS[k])}\tstimuli/stim${k}.png`);
  });
  writeFileSync(`${stem}_events.tsv`, rows.join('\n') + '\n');
  writeFileSync(join(dir, 'stimuli.tsv'), stimRows.join('\n') + '\n');
  writeFileSync(
    join(dir, 'dataset_description.json'),
    JSON.stringify({ Name: 'mindsemantix synthetic test session', BIDSVersion: '1.8.0' }),
  );
  return { dir, subject, run, volumes: nvol, trials, tr };
}
