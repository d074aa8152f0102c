// A sender for the AFNI real-time plugin protocol, written from AFNI's README.realtime and rtfeedme.c (not AFNI's own
// code): control channel → "tcp:HOST:PORT\0" → data channel: header commands + "\0", then raw images.
import { connect, type Socket } from 'node:net';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface AfniSend {
  controlPort: number;
  dataPort: number;
  /** Datasets sent on one data channel, separated by rtfeedme's end marker. */
  datasets: { header: string[]; images: Buffer[] }[];
  /** Close the data channel after this many bytes of the last dataset's images (a sender that vanishes). */
  vanishAfter?: number;
  /** The control message, when not tcp:127.0.0.1:dataPort. */
  channel?: string;
}

async function open(port: number): Promise<Socket> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (e) {
      if (attempt > 30) throw e;
      await sleep(100); // rtfeedme keeps trying while the receiver opens its data port
    }
  }
}

const write = (s: Socket, b: Buffer) => new Promise<void>((r) => s.write(b, () => r()));

export async function sendAfni(o: AfniSend): Promise<void> {
  const control = await open(o.controlPort);
  await write(control, Buffer.from(`${o.channel ?? `tcp:127.0.0.1:${o.dataPort}`}\0`, 'latin1'));
  control.end();
  if (o.channel) return;
  const data = await open(o.dataPort);
  for (const [i, d] of o.datasets.entries()) {
    await write(data, Buffer.from(`${d.header.join('\n')}\n\0`, 'latin1'));
    const last = i === o.datasets.length - 1;
    let sent = 0;
    for (const img of d.images) {
      if (last && o.vanishAfter !== undefined && sent + img.length > o.vanishAfter) {
        await write(data, img.subarray(0, o.vanishAfter - sent));
        data.destroy();
        return;
      }
      await write(data, img);
      sent += img.length;
      await sleep(2);
    }
    if (!last) {
      // end of this dataset: an image-sized transmission starting with the marker
      const marker = Buffer.alloc(d.images[0].length);
      marker.write('Et Earello Endorenna utulien!!', 'latin1');
      await write(data, marker);
    }
  }
  await new Promise<void>((r) => data.end(() => r()));
}
