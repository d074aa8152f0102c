// A slice montage of one volume for the dashboard (not a Siemens DICOM mosaic: that is src/scanner/mosaic.ts): evenly
// spaced axial slices tiled in a grid, intensities windowed at robust percentiles, encoded as PNG with sharp. Runs off
// the per-volume path, throttled by the caller. The dashboard's socket event keeps its name 'mosaic'.
import sharp from 'sharp';

export interface SliceMontageOptions {
  /** Slices shown (default 12). */
  slices?: number;
  columns?: number;
  /** Upscale factor for legibility (default 2; the browser scales further without smoothing). */
  scale?: number;
}

/** Grey-level tile image (one byte per pixel) of `vol` [nx, ny, nz] x-fastest. */
export function sliceMontagePixels(
  data: Float32Array,
  dims: [number, number, number],
  opts: SliceMontageOptions = {},
): { pixels: Uint8Array; width: number; height: number } {
  const [nx, ny, nz] = dims;
  const n = Math.min(opts.slices ?? 12, nz);
  const cols = Math.min(opts.columns ?? Math.ceil(Math.sqrt(n * 1.5)), n);
  const rows = Math.ceil(n / cols);
  // Robust window from a strided sample (a full sort of ~700k voxels is not needed for display).
  const stride = Math.max(1, Math.floor(data.length / 5000));
  const sample: number[] = [];
  for (let i = 0; i < data.length; i += stride) if (Number.isFinite(data[i])) sample.push(data[i]);
  sample.sort((a, b) => a - b);
  const lo = sample.length ? sample[Math.floor(sample.length * 0.02)] : 0;
  const hi = sample.length ? sample[Math.floor(sample.length * 0.995)] : 1;
  const span = hi - lo || 1;
  const width = cols * nx;
  const height = rows * ny;
  const pixels = new Uint8Array(width * height);
  for (let k = 0; k < n; k++) {
    const z = Math.round(((k + 1) * (nz - 1)) / (n + 1));
    const ox = (k % cols) * nx;
    const oy = Math.floor(k / cols) * ny;
    for (let y = 0; y < ny; y++) {
      const row = (oy + (ny - 1 - y)) * width + ox; // anterior (high y) at the top
      const src = z * nx * ny + y * nx;
      for (let x = 0; x < nx; x++) {
        const v = ((data[src + x] - lo) / span) * 255;
        pixels[row + x] = v <= 0 ? 0 : v >= 255 ? 255 : v;
      }
    }
  }
  return { pixels, width, height };
}

export async function renderSliceMontagePng(
  data: Float32Array,
  dims: [number, number, number],
  opts: SliceMontageOptions = {},
): Promise<Buffer> {
  const m = sliceMontagePixels(data, dims, opts);
  const scale = opts.scale ?? 2;
  return sharp(Buffer.from(m.pixels.buffer, m.pixels.byteOffset, m.pixels.byteLength), {
    raw: { width: m.width, height: m.height, channels: 1 },
  })
    .resize(m.width * scale, m.height * scale, { kernel: 'nearest' })
    .png({ compressionLevel: 3 })
    .toBuffer();
}
