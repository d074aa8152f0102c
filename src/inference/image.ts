// Planar float images from the generator → encoded PNG/WebP with sharp; stimulus images → RGB bytes.
import sharp from 'sharp';

export type ImageFormat = 'png' | 'webp';

/** [3, H, W] float32 in 0..1 (planar, as the generator writes it) → interleaved RGB bytes. */
export function planarToRgb(data: Float32Array, height: number, width: number, offset = 0): Uint8Array {
  const n = height * width;
  const out = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * n;
    for (let i = 0; i < n; i++) {
      const v = data[base + i];
      out[i * 3 + c] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
    }
  }
  return out;
}

export async function encodeRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  format: ImageFormat = 'png',
  upscaleTo?: number,
): Promise<Uint8Array> {
  let img = sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } });
  if (upscaleTo && upscaleTo > width)
    img = img.resize(upscaleTo, Math.round((upscaleTo * height) / width), { kernel: 'lanczos3' });
  const buf =
    format === 'webp' ? await img.webp({ quality: 85 }).toBuffer() : await img.png({ compressionLevel: 6 }).toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function mimeOf(format: ImageFormat): string {
  return format === 'webp' ? 'image/webp' : 'image/png';
}

/** An encoded image (PNG, JPEG, WebP) → interleaved 8-bit RGB; alpha dropped, greyscale expanded to three channels. */
export async function decodeRgb(bytes: Uint8Array): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(bytes)
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`the image decoded to ${info.channels} channels, not RGB`);
  return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}
