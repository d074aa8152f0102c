// The dashboard's copy of a stimulus image: a WebP data: URL (256 px, the size the reconstruction is shown at), so a
// long session's snapshot stays small whatever the senders inline (up to 512 KiB an image).
import sharp from 'sharp';
import type { StimulusImage } from '../../core/types.js';
import { MAX_INLINE_IMAGE_SIDE } from '../../protocol/inlineImage.js';

export async function stimulusThumbnail(img: StimulusImage, side = 128): Promise<string> {
  // The header was checked at entry; the pixel cap guards the decoder again should that check ever change.
  const webp = await sharp(img.bytes, { limitInputPixels: MAX_INLINE_IMAGE_SIDE * MAX_INLINE_IMAGE_SIDE })
    .rotate()
    .resize(side, side, { fit: 'cover' })
    .webp({ quality: 80 })
    .toBuffer();
  return `data:image/webp;base64,${webp.toString('base64')}`;
}
