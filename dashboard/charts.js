// Small canvas line charts (no library, no build step): axes with tick labels, several series, horizontal threshold
// lines and vertical marks (trial onsets).

const AXIS = '#8d98b3';
const GRID = '#263049';

function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = Number(canvas.getAttribute('height')) || 150;
  if (canvas.width !== Math.round(w * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.height = `${h}px`;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function niceTicks(min, max, n) {
  const span = max - min || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || mag * 10;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(Number(v.toFixed(6)));
  return out;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1000) return `${(v / 1000).toFixed(a >= 10000 ? 0 : 1)}k`;
  if (a >= 10 || v === 0) return String(Math.round(v));
  return v.toFixed(a >= 1 ? 1 : 2);
}

/**
 * series: [{ xs, ys, color, label, fill }]; opts: { xMin, xMax, yMin, yMax, hLines: [{ y, color, label }],
 * vMarks: [{ x, color }], xLabel, yLabel, empty }
 */
export function lineChart(canvas, series, opts = {}) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 40, r: 8, t: 6, b: 18 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  let xMin = opts.xMin ?? Infinity;
  let xMax = opts.xMax ?? -Infinity;
  let yMin = opts.yMin ?? Infinity;
  let yMax = opts.yMax ?? -Infinity;
  let points = 0;
  for (const s of series) {
    for (let i = 0; i < s.ys.length; i++) {
      const x = s.xs[i];
      const y = s.ys[i];
      if (!Number.isFinite(y)) continue;
      points++;
      if (opts.xMin === undefined) xMin = Math.min(xMin, x);
      if (opts.xMax === undefined) xMax = Math.max(xMax, x);
      if (opts.yMin === undefined) yMin = Math.min(yMin, y);
      if (opts.yMax === undefined) yMax = Math.max(yMax, y);
    }
  }
  for (const l of opts.hLines || []) {
    if (opts.yMax === undefined) yMax = Math.max(yMax, l.y * 1.1);
  }
  if (!points) {
    ctx.fillStyle = AXIS;
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillText(opts.empty || 'waiting for data…', pad.l + 8, pad.t + ph / 2);
    return;
  }
  if (yMax === yMin) {
    yMax += 1;
    yMin -= 1;
  }
  if (xMax === xMin) xMax = xMin + 1;
  const X = (x) => pad.l + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (y) => pad.t + ph - ((y - yMin) / (yMax - yMin)) * ph;
  ctx.font = '10px system-ui, sans-serif';
  ctx.lineWidth = 1;
  for (const t of niceTicks(yMin, yMax, 4)) {
    ctx.strokeStyle = GRID;
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(t));
    ctx.lineTo(w - pad.r, Y(t));
    ctx.stroke();
    ctx.fillStyle = AXIS;
    ctx.textAlign = 'right';
    ctx.fillText(fmt(t), pad.l - 4, Y(t) + 3);
  }
  ctx.textAlign = 'center';
  for (const t of niceTicks(xMin, xMax, 6)) ctx.fillText(fmt(t), X(t), h - 5);
  if (opts.xLabel) {
    ctx.textAlign = 'right';
    ctx.fillText(opts.xLabel, w - pad.r, h - 5);
  }
  for (const m of opts.vMarks || []) {
    if (m.x < xMin || m.x > xMax) continue;
    ctx.strokeStyle = m.color || 'rgba(167,139,250,.35)';
    ctx.beginPath();
    ctx.moveTo(X(m.x), pad.t);
    ctx.lineTo(X(m.x), pad.t + ph);
    ctx.stroke();
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 1.5;
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < s.ys.length; i++) {
      const y = s.ys[i];
      if (!Number.isFinite(y)) {
        pen = false;
        continue;
      }
      const px = X(s.xs[i]);
      const py = Y(Math.max(yMin, Math.min(yMax, y)));
      if (pen) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
      pen = true;
    }
    ctx.stroke();
  }
  for (const l of opts.hLines || []) {
    ctx.strokeStyle = l.color || '#ff6b6b';
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(pad.l, Y(l.y));
    ctx.lineTo(w - pad.r, Y(l.y));
    ctx.stroke();
    ctx.setLineDash([]);
    if (l.label) {
      ctx.fillStyle = l.color || '#ff6b6b';
      ctx.textAlign = 'left';
      ctx.fillText(l.label, pad.l + 4, Y(l.y) - 3);
    }
  }
  for (const p of opts.points || []) {
    ctx.fillStyle = p.color;
    ctx.beginPath();
    ctx.arc(X(p.x), Y(Math.min(yMax, p.y)), 3, 0, Math.PI * 2);
    ctx.fill();
  }
}

export function legend(el, items) {
  el.innerHTML = '';
  for (const it of items) {
    const span = document.createElement('span');
    const i = document.createElement('i');
    i.style.background = it.color;
    span.append(i, document.createTextNode(it.label));
    el.append(span);
  }
}
