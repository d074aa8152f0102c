// Canonical double-gamma haemodynamic response (SPM defaults: peak shape 6, undershoot shape 16, ratio 1/6,
// dispersion 1 s), and its convolution with a boxcar stimulus, sampled at arbitrary times.

function gammaPdf(t: number, shape: number): number {
  if (t <= 0) return 0;
  return Math.exp((shape - 1) * Math.log(t) - t - logGamma(shape));
}

function logGamma(x: number): number {
  // Lanczos approximation (g = 7), accurate to ~1e-15 for x > 0.5.
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Double-gamma HRF value at t seconds after an impulse (peak ≈ 5 s, undershoot ≈ 15 s). */
export function doubleGammaHrf(t: number): number {
  return gammaPdf(t, 6) - gammaPdf(t, 16) / 6;
}

/**
 * Response at time t (s from run start) to a boxcar from `onset` lasting `duration` s (0 → impulse),
 * by numerical integration of the HRF at 0.05 s resolution.
 */
export function boxcarResponse(t: number, onset: number, duration: number): number {
  const rel = t - onset;
  if (rel <= 0) return 0;
  if (duration <= 0) return doubleGammaHrf(rel);
  const dt = 0.05;
  const end = Math.min(duration, rel);
  let s = 0;
  for (let u = dt / 2; u < end; u += dt) s += doubleGammaHrf(rel - u) * dt;
  return s;
}
