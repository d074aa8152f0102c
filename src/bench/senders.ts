// Synthetic scanner-side writers for the ingest benchmark: a Philips XTC dump (PAR V4.2 + REC), an MRD image stream
// and an AFNI real-time sender. They write what the bridge reads; the tests check the readers against real files
// (nibabel's phantom) and real senders (the ismrmrd package) — these only time the paths.
import { connect, type Socket } from 'node:net';

/** A one-dynamic PAR (V4.2) for an axial int16 stack, unit scaling: enough for the bridge's PAR/REC reader. */
export function xtcPar(dims: [number, number, number], dynamic: number, trMs: number): string {
  const [nx, ny, nz] = dims;
  const general = [
    ['Max. number of slices/locations', nz],
    ['Max. number of dynamics', 1000],
    ['Technique', 'FEEPI'],
    ['Acquisition nr', 1],
    ['Repetition time [ms]', trMs.toFixed(3)],
    ['FOV (ap,fh,rl) [mm]', `${ny * 3} ${nz * 3} ${nx * 3}`],
    ['Angulation midslice(ap,fh,rl)[degr]', '0 0 0'],
    ['Off Centre midslice(ap,fh,rl) [mm]', '0 0 0'],
    ['Dynamic scan      <0=no 1=yes> ?', 1],
  ].map(([k, v]) => `.    ${String(k).padEnd(35)}:   ${v}`);
  const lines = Array.from(
    { length: nz },
    (_, k) =>
      // sl ec dyn ph ty seq idx pix scan% rx ry ri rs ss wc ww ang×3 off×3 thick gap disp orient fmri edes spacing×2 echo dtime ttime diff avg flip freq rrmin rrmax turbo delay bnum gnum cont anis diff×3 lty
      `${k + 1} 1 ${dynamic + 1} 1 0 2 ${k} 16 100 ${nx} ${ny} 0 1 1 0 0 0 0 0 0 0 0 3 0 0 1 0 2 3 3 30 ${((dynamic * trMs) / 1000).toFixed(2)} 0 0 1 90 0 0 0 0 0 1 1 0 0 0 0 0 1`,
  );
  return [
    '# === DATA DESCRIPTION FILE ======================================================',
    '#',
    '# CLINICAL TRYOUT             Research image export tool     V4.2',
    '#',
    '# === GENERAL INFORMATION ===',
    '#',
    ...general,
    '#',
    '# === IMAGE INFORMATION ===',
    '',
    ...lines,
    '',
    '# === END OF DATA DESCRIPTION FILE ===',
    '',
  ].join('\n');
}

const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};

/** MRD messages: the XML header, and one 3-D int16 image (id 1022) per volume. */
export function mrdHeaderMessage(measurementId: string, trMs: number, slices: number): Buffer {
  const xml =
    `<?xml version="1.0"?><ismrmrdHeader><measurementInformation><measurementID>${measurementId}</measurementID></measurementInformation>` +
    `<encoding><encodingLimits><slice><minimum>0</minimum><maximum>${slices - 1}</maximum><center>0</center></slice></encodingLimits></encoding>` +
    `<sequenceParameters><TR>${trMs}</TR></sequenceParameters></ismrmrdHeader>`;
  const x = Buffer.from(xml, 'utf8');
  return Buffer.concat([u16(3), u32(x.length), x]);
}

export function mrdImageMessage(dims: [number, number, number], repetition: number, data: Int16Array): Buffer {
  const h = Buffer.alloc(198);
  h.writeUInt16LE(1, 0); // version
  h.writeUInt16LE(2, 2); // short
  dims.forEach((d, i) => h.writeUInt16LE(d, 16 + 2 * i));
  dims.forEach((d, i) => h.writeFloatLE(d * 3, 22 + 4 * i));
  h.writeUInt16LE(1, 34); // channels
  [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ].forEach((v, j) => v.forEach((c, i) => h.writeFloatLE(c, 48 + 12 * j + 4 * i)));
  h.writeUInt16LE(repetition, 104);
  const attr = Buffer.alloc(8);
  return Buffer.concat([u16(1022), h, attr, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** AFNI: the control message naming the data port, and the data channel's header for 3D+t int16 volumes. */
export function afniHeader(dims: [number, number, number], tr: number): Buffer {
  const [nx, ny, nz] = dims;
  return Buffer.from(
    [
      'ACQUISITION_TYPE 3D+t',
      `TR ${tr}`,
      `XYFOV ${nx * 3} ${ny * 3} ${nz * 3}`,
      `XYMATRIX ${nx} ${ny} ${nz}`,
      'XYZAXES R-L A-P I-S',
      'DATUM short',
      'BYTEORDER LSB_FIRST',
      '',
    ].join('\n') + '\0',
    'latin1',
  );
}

export async function connectWithRetry(port: number, tries = 50): Promise<Socket> {
  for (let i = 0; ; i++) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (e) {
      if (i >= tries) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A TCP port nobody listens on right now (for a data channel the sender names before the receiver opens it). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}
