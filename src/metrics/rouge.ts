const BETA = 1.2;

function lcs(a: readonly string[], b: readonly string[]): number {
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  let prev = new Uint32Array(short.length + 1);
  let cur = new Uint32Array(short.length + 1);
  for (let i = 1; i <= long.length; i++) {
    for (let j = 1; j <= short.length; j++) {
      cur[j] = long[i - 1] === short[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[short.length];
}

/** ROUGE-L of one tokenized candidate as pycocoevalcap computes it: tokens split on single spaces, the best precision
 * and the best recall over the references (taken separately), F-measure with beta 1.2. */
export function rougeL(candidate: string, refs: readonly string[]): number {
  const c = candidate.split(' ');
  let precMax = 0;
  let recMax = 0;
  for (const ref of refs) {
    const r = ref.split(' ');
    const l = lcs(r, c);
    precMax = Math.max(precMax, l / c.length);
    recMax = Math.max(recMax, l / r.length);
  }
  if (precMax === 0 || recMax === 0) return 0;
  return ((1 + BETA ** 2) * precMax * recMax) / (recMax + BETA ** 2 * precMax);
}
