import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Command } from '../command.js';
import { numberFlag, parseArgs, stringFlag, type FlagSpecs } from '../args.js';
import { UserError } from '../../core/errors.js';
import {
  SliceAssembler,
  compareVolumes,
  encodeNifti1Series,
  encodeNifti1Volume,
  readScannerFile,
  type ScannerFormat,
  type ScannerVolume,
} from '../../scanner/index.js';

const specs: FlagSpecs = {
  o: { type: 'string' },
  output: { type: 'string' },
  format: { type: 'string', default: 'auto', choices: ['auto', 'dicom', 'nifti', 'parrec'] },
  'parrec-scaling': { type: 'string', default: 'dv', choices: ['dv', 'fp'] },
  'slices-per-volume': { type: 'string' },
  datatype: { type: 'string', default: 'auto', choices: ['auto', 'float32', 'int16'] },
};

const help = `mindsemantix convert INPUT... -o OUT.nii[.gz] [options]

Converts scanner files to NIfTI-1 with the same readers the bridge uses: Siemens mosaic DICOM, enhanced multi-frame
DICOM (Siemens XA, Philips), one-DICOM-per-slice series (GE style), NIfTI-1/2 (.nii, .nii.gz) and Philips PAR/REC
(V4-V4.2; give the .PAR, its .REC is read beside it; XTC dump folders of one pair per dynamic work too).
INPUT may be files or folders (every file directly inside). Several volumes become one 4-D series, ordered as the
bridge orders them: series number, then volume number (the trailing number of the file name, e.g.
001_000007_000042.dcm → 42, else the DICOM acquisition/temporal index), then acquisition time.
Voxel order and affine are dcm2niix's (x = DICOM column, y = row reversed; RAS+ sform = qform).

Options:
  -o, --output FILE          output .nii or .nii.gz (required)
  --format auto|dicom|nifti|parrec
                             how to read the inputs (default: auto-detect each file)
  --parrec-scaling dv|fp     PAR/REC values: dv (console values, default, as nibabel) or fp (floating point values)
  --slices-per-volume N      slices per volume for per-slice DICOM, when the files do not say (ImagesInAcquisition)
  --datatype auto|float32|int16
                             stored type; auto writes int16 when every value is an integer that fits, else float32
`;

function expandInputs(inputs: string[]): string[] {
  const files: string[] = [];
  for (const inp of inputs) {
    let st;
    try {
      st = statSync(inp);
    } catch {
      throw new UserError(`convert: input ${inp} does not exist; pass scanner files or folders that hold them.`, 2);
    }
    if (st.isDirectory()) {
      const inside = readdirSync(inp)
        .filter((f) => !f.startsWith('.'))
        .map((f) => join(inp, f))
        .filter((f) => statSync(f).isFile())
        .sort();
      if (!inside.length) throw new UserError(`convert: folder ${inp} holds no files.`, 2);
      files.push(...inside);
    } else files.push(inp);
  }
  return files;
}

function fitsInt16(vols: ScannerVolume[]): boolean {
  for (const v of vols) for (const x of v.data) if (!Number.isInteger(x) || x < -32768 || x > 32767) return false;
  return true;
}

export const command: Command = {
  name: 'convert',
  summary:
    'convert scanner files (DICOM mosaic/enhanced/per-slice, NIfTI, Philips PAR/REC) to NIfTI-1, as the bridge reads them',
  help,
  async run(argv: string[]): Promise<number> {
    const p = parseArgs('convert', argv, specs);
    const out = stringFlag(p, 'o') ?? stringFlag(p, 'output');
    if (!out) throw new UserError('convert: -o OUT.nii[.gz] is required; run `mindsemantix convert --help`.', 2);
    if (!/\.nii(\.gz)?$/i.test(out))
      throw new UserError(`convert: the output must end in .nii or .nii.gz (got "${out}").`, 2);
    if (!p.positionals.length)
      throw new UserError('convert: give at least one input file or folder; run `mindsemantix convert --help`.', 2);
    const format = (stringFlag(p, 'format') ?? 'auto') as ScannerFormat;
    const spv = numberFlag('convert', p, 'slices-per-volume', { min: 1, integer: true });
    // a REC is read through its PAR: drop RECs whose PAR is among the inputs
    const all = expandInputs(p.positionals);
    const pars = new Set(all.filter((f) => /\.par$/i.test(f)).map((f) => f.replace(/\.par$/i, '').toLowerCase()));
    const files = all.filter((f) => !(/\.rec$/i.test(f) && pars.has(f.replace(/\.rec$/i, '').toLowerCase())));
    const parrecScaling = stringFlag(p, 'parrec-scaling') as 'dv' | 'fp';
    const asm = new SliceAssembler({ slicesPerVolume: spv });
    const volumes: ScannerVolume[] = [];
    for (const f of files) {
      const r = readScannerFile(f, { format, parrecScaling });
      for (const w of r.status === 'complete' ? (r.warnings ?? []) : []) process.stderr.write(`convert: ${f}: ${w}\n`);
      if (r.status === 'incomplete') throw new UserError(`convert: ${f} is incomplete: ${r.reason}`);
      if (r.status === 'invalid') throw new UserError(`convert: ${f} cannot be read: ${r.reason}`);
      volumes.push(...r.volumes);
      for (const s of r.slices ?? []) volumes.push(...asm.add(s));
    }
    volumes.push(...asm.flush());
    if (!volumes.length) throw new UserError('convert: the inputs hold no volumes.');
    volumes.sort(compareVolumes);
    const v0 = volumes[0];
    for (const [i, v] of volumes.entries()) {
      if (v.dims.some((d, j) => d !== v0.dims[j])) {
        throw new UserError(
          `convert: volume ${i + 1} is ${v.dims.join('×')} but volume 1 is ${v0.dims.join('×')}; convert one series at a time.`,
        );
      }
      if (v.affine.some((a, j) => Math.abs(a - v0.affine[j]) > 1e-3)) {
        throw new UserError(
          `convert: volume ${i + 1} has a different position or orientation from volume 1; convert one series at a time.`,
        );
      }
    }
    const dt = stringFlag(p, 'datatype') ?? 'auto';
    const asInt16 = dt === 'int16' || (dt === 'auto' && fitsInt16(volumes));
    if (dt === 'int16' && !fitsInt16(volumes))
      throw new UserError(
        'convert: --datatype int16 would change values (non-integers or outside -32768..32767); use float32.',
        2,
      );
    const data = volumes.map((v) => (asInt16 ? Int16Array.from(v.data) : v.data));
    const tr = volumes.find((v) => v.tr)?.tr ?? 0;
    const description = `mindsemantix convert (${v0.source})`;
    const bytes =
      volumes.length === 1
        ? encodeNifti1Volume({ dims: v0.dims, affine: v0.affine, tr, data: data[0], description })
        : encodeNifti1Series({ dims: v0.dims, affine: v0.affine, tr, volumes: data, description });
    writeFileSync(out, /\.gz$/i.test(out) ? gzipSync(bytes) : bytes);
    console.log(
      `wrote ${out}: ${v0.dims.join('×')}${volumes.length > 1 ? `×${volumes.length}` : ''} ${asInt16 ? 'int16' : 'float32'}, ` +
        `voxel ${v0.voxelSize.map((s) => +s.toFixed(4)).join('×')} mm${tr ? `, TR ${tr} s` : ''} (${v0.source}, ${files.length} file(s))`,
    );
    return 0;
  },
};
