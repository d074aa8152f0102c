// BIDS recording, written incrementally and crash-safely.
//
// The _bold.nii.gz is a chain of gzip members (gzip allows concatenation; nibabel/Python read it as one stream):
//   member 0: the 352-byte NIfTI-1 header, stored uncompressed so it has a fixed size and can be rewritten in place;
//   member k: the voxels of volume k-1 (deflate level 1).
// Appending a volume: append its member and fdatasync, rewrite the sidecar JSON (temp file fsynced, renamed, directory
// fsynced), then rewrite member 0 with the new dim[4] and the committed file length (kept in `descrip`), and fdatasync.
// Only then is the volume acknowledged.
// After kill -9 at any point, the header describes only complete members: nibabel reads every acknowledged volume,
// and a restarted server truncates the file to the committed length and continues the run.
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { crc32, gzip, constants as zlibConstants } from 'node:zlib';
import type { RunInfo, StimulusEvent } from '../core/types.js';
import { niftiHeader4D, NIFTI1_VOX_OFFSET, NIFTI_TYPE } from '../scanner/nifti.js';
import { readNiftiHeader, updateNiftiHeader } from '../scanner/niftiHeader.js';
import { storeStimulusImage } from './stimulusStore.js';
import { syncDir, writeFileDurably, type RecordingFs } from './durableFile.js';

export type { RecordingFs };

export type RecordType = 'int16' | 'float32';
const gzipAsync = promisify(gzip);
const HEADER_MEMBER_BYTES = 10 + 5 + NIFTI1_VOX_OFFSET + 8;
const EVENTS_COLUMNS = ['onset', 'duration', 'trial_type', 'stimulus_id', 'references', 'stim_file'];

export class RecordingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordingError';
  }
}

/** Paths of one run inside a BIDS dataset. */
export function runPaths(
  root: string,
  subject: string,
  session: string,
  run: string,
): { bold: string; json: string; events: string } {
  const stem = join(root, `sub-${subject}`, `ses-${session}`, 'func', `sub-${subject}_ses-${session}_${run}`);
  return { bold: `${stem}_bold.nii.gz`, json: `${stem}_bold.json`, events: `${stem}_events.tsv` };
}

/** A gzip member holding `payload` in one stored (uncompressed) deflate block: its size depends only on the payload size. */
function storedGzipMember(payload: Uint8Array): Buffer {
  const out = Buffer.alloc(10 + 5 + payload.length + 8);
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255], 0);
  out[10] = 1; // BFINAL, stored
  out.writeUInt16LE(payload.length, 11);
  out.writeUInt16LE(~payload.length & 0xffff, 13);
  out.set(payload, 15);
  out.writeUInt32LE(crc32(payload) >>> 0, 15 + payload.length);
  out.writeUInt32LE(payload.length, 19 + payload.length);
  return out;
}

/** The commit mark kept in the header's descrip: the file length up to which every member is committed. */
const commitMark = (end: number): string => `mindsemantix serve recording end=${end}`;

/** BIDS-style seconds: 3 decimals when that is exact (8 → "8.000"), else full precision. */
function seconds(x: number): string {
  const f = x.toFixed(3);
  return Number(f) === x ? f : String(x);
}

function tsvCell(v: string | number | undefined): string {
  if (v === undefined || v === '') return 'n/a';
  return String(v).replace(/[\t\r\n]/g, ' ');
}

interface Sidecar {
  RepetitionTime: number;
  TaskName: string;
  AcquisitionTimes: number[];
  MissingVolumes: number[];
  [k: string]: unknown;
}

export interface RecordedVolume {
  /** Voxels as recorded: Int16Array for int16 recordings, Float32Array otherwise. */
  data: Int16Array | Float32Array;
  acquisitionTime: number;
}

/**
 * One run's recording: `count` volumes committed, `eventsCount` events. Methods must not be called concurrently.
 * Every append is a transaction: the in-memory state (count, file end, sidecar lists) changes only once the commit
 * is on disk, so a failed append (ENOSPC, EIO) can be retried as it is, without duplicating or shifting volumes.
 */
export class RunRecording {
  private fh: FileHandle | undefined;
  private header: Uint8Array | undefined;
  private end = 0;
  private sidecar: Sidecar;
  /** Bytes of the events TSV that hold complete, committed rows. */
  private eventsEnd = 0;
  /** A failed append may have left bytes past the committed end: cut them before the next one. */
  private dirty = false;
  private eventsDirty = false;
  count = 0;
  eventsCount = 0;
  type: RecordType | undefined;

  private constructor(
    readonly root: string,
    readonly info: RunInfo,
    readonly paths: ReturnType<typeof runPaths>,
    private readonly fs: RecordingFs,
  ) {
    this.sidecar = { RepetitionTime: info.tr, TaskName: info.task, AcquisitionTimes: [], MissingVolumes: [] };
  }

  /** Opens the run's recording under `root`, continuing it when one exists (after a restart). */
  static async open(root: string, info: RunInfo, fs: RecordingFs = fsp): Promise<RunRecording> {
    const r = new RunRecording(root, info, runPaths(root, info.subject, info.session, info.run), fs);
    await fs.mkdir(dirname(r.paths.bold), { recursive: true });
    await ensureDatasetDescription(fs, root);
    const exists = await fs.stat(r.paths.bold).then(
      () => true,
      () => false,
    );
    if (exists) await r.resume();
    await r.resumeEvents();
    return r;
  }

  private async resume(): Promise<void> {
    const fh = await this.fs.open(this.paths.bold, 'r+');
    const first = Buffer.alloc(HEADER_MEMBER_BYTES);
    await fh.read(first, 0, HEADER_MEMBER_BYTES, 0);
    if (first[0] !== 0x1f || first[1] !== 0x8b || first[10] !== 1 || first.readUInt16LE(11) !== NIFTI1_VOX_OFFSET) {
      await fh.close();
      throw new RecordingError(
        `${this.paths.bold} was not written by mindsemantix serve; move it away or record into another folder.`,
      );
    }
    const header = new Uint8Array(first.subarray(15, 15 + NIFTI1_VOX_OFFSET));
    let h;
    try {
      h = readNiftiHeader(header).fields;
    } catch {
      await fh.close();
      throw new RecordingError(
        `${this.paths.bold} was not written by mindsemantix serve; move it away or record into another folder.`,
      );
    }
    const m = /end=(\d+)/.exec(h.descrip.replace(/\0.*$/s, ''));
    const dims = h.dim.slice(1, 4);
    if (!m) {
      await fh.close();
      throw new RecordingError(
        `${this.paths.bold} has no commit mark in its header; it was not written by mindsemantix serve.`,
      );
    }
    if (dims.some((d, i) => d !== this.info.dims[i])) {
      await fh.close();
      throw new RecordingError(
        `${this.paths.bold} holds ${dims.join('×')} volumes but the run now says ${this.info.dims.join('×')}.`,
      );
    }
    this.type = h.datatype === NIFTI_TYPE.int16 ? 'int16' : 'float32';
    this.count = h.dim[4];
    this.end = Number(m[1]);
    await fh.truncate(this.end); // drop a member appended but never committed
    this.fh = fh;
    this.header = header;
    try {
      const j = JSON.parse(await this.fs.readFile(this.paths.json, 'utf8')) as Sidecar;
      this.sidecar = {
        ...j,
        AcquisitionTimes: (j.AcquisitionTimes ?? []).slice(0, this.count),
        MissingVolumes: (j.MissingVolumes ?? []).filter((i) => i < this.count),
      };
    } catch {
      this.sidecar.AcquisitionTimes = Array.from({ length: this.count }, (_, i) => i * this.info.tr);
    }
  }

  private async resumeEvents(): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await this.fs.readFile(this.paths.events);
    } catch {
      await writeFileDurably(this.fs, this.paths.events, EVENTS_COLUMNS.join('\t') + '\n');
      this.eventsEnd = Buffer.byteLength(EVENTS_COLUMNS.join('\t') + '\n');
      return;
    }
    const complete = bytes.lastIndexOf(0x0a) + 1;
    if (complete < bytes.length) await this.fs.truncate(this.paths.events, complete);
    this.eventsEnd = complete;
    this.eventsCount = Math.max(
      0,
      bytes
        .subarray(0, complete)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.length > 0).length - 1,
    );
  }

  /** Appends volume `count` (voxels already converted to the recording type) and commits it. */
  async appendVolume(data: Int16Array | Float32Array, acquisitionTime: number): Promise<void> {
    await this.appendVolumes([{ data, acquisitionTime }]);
  }

  /**
   * Appends consecutive volumes and commits them together (one header rewrite, two fdatasyncs): a backlog is
   * written at disk speed instead of sync speed. Compression runs on the libuv pool, in parallel.
   */
  async appendVolumes(items: { data: Int16Array | Float32Array; acquisitionTime: number }[]): Promise<void> {
    if (items.length === 0) return;
    const members = await Promise.all(items.map(({ data }) => compressVolume(data)));
    await this.commit(
      items[0].data instanceof Int16Array ? 'int16' : 'float32',
      members,
      items.map((it) => it.acquisitionTime),
      false,
    );
  }

  /**
   * Volumes [from, to) reported missing keep their places in the 4-D file as zeros, listed in the sidecar's
   * MissingVolumes. One zero volume is compressed once and its member repeated, in commits of bounded size.
   */
  async appendMissing(from: number, to: number, type: RecordType): Promise<void> {
    if (from !== this.count)
      throw new Error(`missing volumes ${from}..${to - 1} do not follow the ${this.count} committed volume(s)`);
    const t = this.type ?? type;
    const n = this.info.dims[0] * this.info.dims[1] * this.info.dims[2];
    const member = await compressVolume(t === 'int16' ? new Int16Array(n) : new Float32Array(n));
    for (let i = from; i < to; i += MISSING_PER_COMMIT) {
      const k = Math.min(MISSING_PER_COMMIT, to - i);
      await this.commit(
        t,
        Array<Buffer>(k).fill(member),
        Array.from({ length: k }, (_, j) => (i + j) * this.info.tr),
        true,
      );
    }
  }

  /** The transaction: write the members past the committed end, then sidecar, then header; only then the state moves. */
  private async commit(type: RecordType, members: Buffer[], times: number[], missing: boolean): Promise<void> {
    const first = this.count;
    const sidecar: Sidecar = {
      ...this.sidecar,
      AcquisitionTimes: [...this.sidecar.AcquisitionTimes, ...times],
      MissingVolumes: missing
        ? [...this.sidecar.MissingVolumes, ...times.map((_, i) => first + i)]
        : this.sidecar.MissingVolumes,
    };
    const count = first + members.length;
    if (!this.fh) {
      await this.create(type, members, sidecar);
      return;
    }
    const fh = this.fh;
    const end = this.end + members.reduce((a, m) => a + m.length, 0);
    try {
      if (this.dirty) await fh.truncate(this.end);
      await fh.writev(members, this.end);
      await fh.datasync();
      await this.writeSidecar(sidecar);
      const header = this.header!.slice();
      updateNiftiHeader(header, (h) => {
        h.fields.dim[4] = count;
        h.fields.descrip = commitMark(end);
      });
      const member = storedGzipMember(header);
      await fh.write(member, 0, member.length, 0);
      await fh.datasync();
      this.header = header;
    } catch (e) {
      this.dirty = true;
      throw e;
    }
    this.dirty = false;
    this.end = end;
    this.count = count;
    this.sidecar = sidecar;
  }

  /** An inline stimulus image is stored first (DIR/stimuli/), so the row's stim_file always names a file that exists. */
  async appendEvent(e: StimulusEvent): Promise<void> {
    const stimFile = e.imageData
      ? await storeStimulusImage(this.root, e.stimulusId, e.imageData, this.fs)
      : safeStimulusPath(e.image);
    const row = Buffer.from(
      [
        seconds(e.onset),
        seconds(e.duration),
        e.trialType ?? 'stimulus',
        e.stimulusId,
        e.references ? JSON.stringify(e.references) : undefined,
        stimFile,
      ]
        .map(tsvCell)
        .join('\t') + '\n',
    );
    const fh = await this.fs.open(this.paths.events, 'r+');
    try {
      if (this.eventsDirty) await fh.truncate(this.eventsEnd);
      this.eventsDirty = true;
      await fh.write(row, 0, row.length, this.eventsEnd);
      await fh.datasync();
      this.eventsDirty = false;
    } finally {
      await fh.close();
    }
    this.eventsEnd += row.length;
    this.eventsCount += 1;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }

  /** The file appears (by rename) only with its header and first volumes, so it always loads. */
  private async create(type: RecordType, members: Buffer[], sidecar: Sidecar): Promise<void> {
    const d = this.info.dims;
    const end = HEADER_MEMBER_BYTES + members.reduce((a, m) => a + m.length, 0);
    const header = niftiHeader4D({
      dims: [d[0], d[1], d[2], members.length],
      affine: [...this.info.affine],
      tr: this.info.tr,
      datatype: type,
      description: commitMark(end),
    });
    await this.writeSidecar(sidecar);
    const tmp = `${this.paths.bold}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    const fh = await this.fs.open(tmp, 'w');
    try {
      await fh.writev([storedGzipMember(header), ...members], 0);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await this.fs.rename(tmp, this.paths.bold);
    await syncDir(this.fs, dirname(this.paths.bold));
    this.fh = await this.fs.open(this.paths.bold, 'r+');
    this.type = type;
    this.header = header;
    this.end = end;
    this.count = members.length;
    this.sidecar = sidecar;
  }

  private async writeSidecar(sidecar: Sidecar): Promise<void> {
    await writeFileDurably(this.fs, this.paths.json, JSON.stringify(sidecar, null, 1) + '\n');
  }
}

/** Missing volumes committed together at most (each commit rewrites the sidecar). */
const MISSING_PER_COMMIT = 256;

function compressVolume(data: Int16Array | Float32Array): Promise<Buffer> {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Float mantissas do not match-compress: Huffman-only gives the same size ~3× faster.
  return gzipAsync(
    bytes,
    data instanceof Float32Array ? { level: 1, strategy: zlibConstants.Z_HUFFMAN_ONLY } : { level: 1 },
  );
}

/**
 * A sender's `image` path is kept as stim_file only when it stays inside the dataset (relative, no `..`): a replay of
 * the recording reads stim_file, and must not be pointed at files elsewhere on the machine.
 */
export function safeStimulusPath(p: string | undefined): string | undefined {
  if (!p) return undefined;
  if (isAbsolute(p) || /^[A-Za-z]:/.test(p) || p.split(/[\\/]/).some((s) => s === '..')) return undefined;
  return p;
}

async function ensureDatasetDescription(fs: RecordingFs, root: string): Promise<void> {
  const p = join(root, 'dataset_description.json');
  if (
    await fs.stat(p).then(
      () => true,
      () => false,
    )
  )
    return;
  await writeFileDurably(
    fs,
    p,
    JSON.stringify(
      {
        Name: 'mindsemantix recording',
        BIDSVersion: '1.9.0',
        DatasetType: 'raw',
        GeneratedBy: [{ Name: 'mindsemantix serve' }],
      },
      null,
      1,
    ) + '\n',
  );
}
