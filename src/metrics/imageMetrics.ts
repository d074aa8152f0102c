// Image reconstruction metrics, the same definitions as models/mindsemantix/image_metrics.py (docs/metrics.md "Image
// metrics"); test/fixtures/image-metrics/cases.json is scored by both and must agree within 1e-5.
// Images are planar float [3, H, W] in 0..1 (as the generators write them); RGB bytes are interleaved [H, W, 3].

/** skimage.color.rgb2gray weights (ITU-R BT.709 luma). */
const LUMA = [0.2125, 0.7154, 0.0721] as const;

type Floats = Float32Array | Float64Array;

/** Pearson correlation of the flattened RGB pixels of one pair (equal-length arrays). */
export function pixCorr(recon: Floats, stim: Floats): number {
  if (recon.length !== stim.length || !recon.length)
    throw new Error(`PixCorr needs two images of one size; got ${recon.length} and ${stim.length} values`);
  const n = recon.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += recon[i];
    mb += stim[i];
  }
  ma /= n;
  mb /= n;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    const a = recon[i] - ma;
    const b = stim[i] - mb;
    ab += a * b;
    aa += a * a;
    bb += b * b;
  }
  return ab / Math.max(Math.sqrt(aa * bb), 1e-12);
}

/** [3, H, W] → [H, W] luma. */
export function grey(img: Floats, height: number, width: number): Float64Array {
  const n = height * width;
  if (img.length !== 3 * n) throw new Error(`an image of ${img.length} values is not [3, ${height}, ${width}]`);
  const g = new Float64Array(n);
  for (let i = 0; i < n; i++) g[i] = LUMA[0] * img[i] + LUMA[1] * img[n + i] + LUMA[2] * img[2 * n + i];
  return g;
}

const WINDOW = 11;
const SIGMA = 1.5;

function gaussTaps(): Float64Array {
  const g = new Float64Array(WINDOW);
  let s = 0;
  for (let i = 0; i < WINDOW; i++) {
    const r = i - (WINDOW - 1) / 2;
    g[i] = Math.exp(-(r * r) / (2 * SIGMA * SIGMA));
    s += g[i];
  }
  for (let i = 0; i < WINDOW; i++) g[i] /= s;
  return g;
}
const TAPS = gaussTaps();

/** Valid (unpadded) 2-D convolution with the separable 11-tap Gaussian: [H, W] → [H-10, W-10]. */
function gaussValid(x: Float64Array, height: number, width: number): Float64Array {
  const oh = height - WINDOW + 1;
  const ow = width - WINDOW + 1;
  const rows = new Float64Array(height * ow);
  for (let y = 0; y < height; y++)
    for (let j = 0; j < ow; j++) {
      let s = 0;
      for (let k = 0; k < WINDOW; k++) s += TAPS[k] * x[y * width + j + k];
      rows[y * ow + j] = s;
    }
  const out = new Float64Array(oh * ow);
  for (let i = 0; i < oh; i++)
    for (let j = 0; j < ow; j++) {
      let s = 0;
      for (let k = 0; k < WINDOW; k++) s += TAPS[k] * rows[(i + k) * ow + j];
      out[i * ow + j] = s;
    }
  return out;
}

/**
 * Mean SSIM of one pair as MindEye computes it with skimage (greyscale, Gaussian window 11 taps σ 1.5, population
 * covariances, data range 1), averaged over the valid window positions. Images [3, H, W], H and W ≥ 11.
 */
export function ssim(recon: Floats, stim: Floats, height: number, width: number): number {
  if (height < WINDOW || width < WINDOW)
    throw new Error(`SSIM needs images of at least ${WINDOW}×${WINDOW} pixels; got ${width}×${height}`);
  const x = grey(recon, height, width);
  const y = grey(stim, height, width);
  const n = x.length;
  const xx = new Float64Array(n);
  const yy = new Float64Array(n);
  const xy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const [mx, my, ex2, ey2, exy] = [x, y, xx, yy, xy].map((a) => gaussValid(a, height, width));
  const c1 = 0.01 ** 2;
  const c2 = 0.03 ** 2;
  let sum = 0;
  for (let i = 0; i < mx.length; i++) {
    const sxx = ex2[i] - mx[i] * mx[i];
    const syy = ey2[i] - my[i] * my[i];
    const sxy = exy[i] - mx[i] * my[i];
    sum += ((2 * mx[i] * my[i] + c1) * (2 * sxy + c2)) / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (sxx + syy + c2));
  }
  return sum / mx.length;
}

/** A feature vector standardised to mean 0 and population s.d. 1 (what two-way correlates), as float32. */
export function standardise(f: Floats): Float32Array {
  let m = 0;
  for (let i = 0; i < f.length; i++) m += f[i];
  m /= f.length;
  let v = 0;
  for (let i = 0; i < f.length; i++) v += (f[i] - m) ** 2;
  const sd = Math.max(Math.sqrt(v / f.length), 1e-12);
  const out = new Float32Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = (f[i] - m) / sd;
  return out;
}

/**
 * Two-way identification (MindEye): for reconstruction i and every trial j of another stimulus (`groups`: trials of
 * the same group are not compared; without groups every other trial is), a win when corr(recon_i, stim_i) >
 * corr(recon_i, stim_j); the mean over i of wins / comparisons. Chance 0.5, perfect 1. Feature vectors of one length;
 * `stimFeats[i]` is trial i's stimulus (repeats may share one array).
 */
export function twoWay(
  reconFeats: readonly Floats[],
  stimFeats: readonly Floats[],
  groups?: readonly string[],
): number {
  const n = reconFeats.length;
  if (n < 2 || stimFeats.length !== n || (groups && groups.length !== n))
    throw new Error(`two-way identification needs N ≥ 2 reconstructions, stimuli and groups alike; got ${n}`);
  const len = reconFeats[0].length;
  if ([...reconFeats, ...stimFeats].some((f) => f.length !== len))
    throw new Error('two-way identification needs feature vectors of one length');
  const z = new Map<Floats, Float32Array>();
  const std = (f: Floats) => z.get(f) ?? z.set(f, standardise(f)).get(f)!;
  const corr = (a: Float32Array, b: Float32Array) => {
    let s = 0;
    for (let k = 0; k < len; k++) s += a[k] * b[k];
    return s / len;
  };
  let total = 0;
  for (let i = 0; i < n; i++) {
    const r = std(reconFeats[i]);
    const own = corr(r, std(stimFeats[i]));
    let wins = 0;
    let compared = 0;
    for (let j = 0; j < n; j++) {
      if (j === i || (groups && groups[j] === groups[i])) continue;
      compared++;
      if (corr(r, std(stimFeats[j])) < own) wins++;
    }
    if (!compared) throw new Error('every trial needs at least one trial of another stimulus to be compared with');
    total += wins / compared;
  }
  return total / n;
}

// ---- Pillow's BOX resize (Image.resize(size, Image.Resampling.BOX) on an 8-bit RGB image), bit for bit ----
// Fixed-point weights of 22 bits, a horizontal pass then a vertical one, each rounded to 8 bits (Pillow's Resample.c).
const PRECISION_BITS = 22;

function boxCoeffs(inSize: number, outSize: number): { start: number; k: number[] }[] {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 0.5 * filterscale;
  const out: { start: number; k: number[] }[] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w: number[] = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = (x + xmin - center + 0.5) / filterscale;
      const v = t > -0.5 && t <= 0.5 ? 1 : 0;
      w.push(v);
      ww += v;
    }
    out.push({ start: xmin, k: w.map((v) => Math.trunc(0.5 + (ww ? v / ww : v) * (1 << PRECISION_BITS))) });
  }
  return out;
}

const clip8 = (s: number) => {
  const v = Math.floor(s / (1 << PRECISION_BITS)); // s ≥ 0 here: an arithmetic shift
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/** Interleaved RGB bytes [H, W, 3] resized with Pillow's BOX filter to outWidth × outHeight (equal to PIL's output). */
export function boxResizeRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  if (rgb.length !== width * height * 3) throw new Error(`${rgb.length} bytes are not a ${width}×${height} RGB image`);
  let src = rgb;
  if (outWidth !== width) {
    const cs = boxCoeffs(width, outWidth);
    const t = new Uint8Array(height * outWidth * 3);
    for (let y = 0; y < height; y++)
      for (let xx = 0; xx < outWidth; xx++) {
        const { start, k } = cs[xx];
        for (let c = 0; c < 3; c++) {
          let s = 1 << (PRECISION_BITS - 1);
          for (let i = 0; i < k.length; i++) s += src[(y * width + start + i) * 3 + c] * k[i];
          t[(y * outWidth + xx) * 3 + c] = clip8(s);
        }
      }
    src = t;
  }
  if (outHeight !== height) {
    const cs = boxCoeffs(height, outHeight);
    const t = new Uint8Array(outHeight * outWidth * 3);
    for (let yy = 0; yy < outHeight; yy++) {
      const { start, k } = cs[yy];
      for (let x = 0; x < outWidth; x++)
        for (let c = 0; c < 3; c++) {
          let s = 1 << (PRECISION_BITS - 1);
          for (let i = 0; i < k.length; i++) s += src[((start + i) * outWidth + x) * 3 + c] * k[i];
          t[(yy * outWidth + x) * 3 + c] = clip8(s);
        }
    }
    src = t;
  }
  return src === rgb ? Uint8Array.from(rgb) : src;
}

/** Interleaved RGB bytes [H, W, 3] → planar float [3, H, W] in 0..1 (bytes / 255, as numpy does). */
export function rgbToPlanar(rgb: Uint8Array, width: number, height: number): Float32Array {
  const n = width * height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = rgb[i * 3 + c] / 255;
  return out;
}
