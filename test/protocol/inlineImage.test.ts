// The event's inline stimulus image: format and size read from the header alone; every refusal is one sentence and
// costs the image, never the event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  decodeInlineImage,
  encodeInlineImage,
  inspectImage,
  parseClientMessage,
  ProtocolError,
  MAX_INLINE_IMAGE_BYTES,
  type ReceivedEvent,
} from '../../src/protocol/index.js';

const u8 = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const solid = (w: number, h: number, channels: 3 | 4 = 3) =>
  sharp({ create: { width: w, height: h, channels, background: { r: 200, g: 40, b: 40, alpha: 0.5 } } });

test('PNG, JPEG and WebP (lossy, lossless, extended) are recognised with their size from the header', async () => {
  const cases: [string, Buffer, string][] = [
    ['png', await solid(37, 21).png().toBuffer(), 'png'],
    ['jpeg', await solid(40, 23).jpeg().toBuffer(), 'jpeg'],
    ['webp lossy', await solid(37, 21).webp({ quality: 50 }).toBuffer(), 'webp'],
    ['webp lossless', await solid(37, 21).webp({ lossless: true }).toBuffer(), 'webp'],
    ['webp with alpha (VP8X)', await solid(37, 21, 4).webp({ quality: 50 }).toBuffer(), 'webp'],
  ];
  for (const [what, buf, format] of cases) {
    const meta = await sharp(buf).metadata();
    const img = inspectImage(u8(buf));
    assert.deepEqual([img.format, img.width, img.height], [format, meta.width, meta.height], what);
    const back = decodeInlineImage(encodeInlineImage(img));
    assert.ok(Buffer.from(back.bytes).equals(buf), `${what} round-trips through base64`);
  }
});

test('bad inline images are refused with a clear sentence (bad-image): not base64, not an image, too big, too many pixels', async () => {
  const why = (v: unknown) => {
    try {
      decodeInlineImage(v);
    } catch (e) {
      assert.ok(e instanceof ProtocolError);
      assert.equal(e.code, 'bad-image');
      assert.equal(e.fatal, false);
      return e.message;
    }
    return 'accepted';
  };
  assert.match(why(42), /"imageData" must be a non-empty base64 string/);
  assert.match(why('not base64 at all!'), /not valid base64/);
  assert.match(why('abc'), /not valid base64/);
  assert.match(
    why(Buffer.from('hello, this is text and not a picture').toString('base64')),
    /not a PNG, JPEG or WebP file/,
  );
  assert.match(why(Buffer.alloc(MAX_INLINE_IMAGE_BYTES + 1, 1).toString('base64')), /above the 512 KiB limit/);
  const png = await solid(8, 8).png().toBuffer();
  const huge = Buffer.from(png);
  huge.writeUInt32BE(20000, 16); // IHDR claims 20000 px wide: a decompression bomb
  assert.match(why(huge.toString('base64')), /png image is 20000×8 pixels; each side must be 1\.\.4096/);
  assert.match(why(png.subarray(0, 20).toString('base64')), /not a PNG, JPEG or WebP/);
});

test('an event with a bad image parses, without the image and with the reason; a good one carries the bytes', async () => {
  const ev = { type: 'event', session: '01', run: 'r', trial: 0, onset: 1, duration: 1, stimulusId: 'x' };
  const bad = parseClientMessage(JSON.stringify({ ...ev, imageData: '%%%' })) as ReceivedEvent;
  assert.equal(bad.type, 'event');
  assert.equal(bad.imageData, undefined);
  assert.match(bad.imageRefused!, /not valid base64/);
  const png = await solid(5, 4).png().toBuffer();
  const good = parseClientMessage(JSON.stringify({ ...ev, imageData: png.toString('base64') })) as ReceivedEvent;
  assert.deepEqual(
    [good.imageData?.format, good.imageData?.width, good.imageData?.height, good.imageRefused],
    ['png', 5, 4, undefined],
  );
});
