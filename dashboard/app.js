/* global URLSearchParams */
// The live dashboard: receives the session so far (`snapshot`) then incremental updates over socket.io, keeps one
// mirror of the server's record, and redraws at most once per animation frame.
import { lineChart, legend } from './charts.js';

const $ = (id) => document.getElementById(id);
const STAGE_COLORS = {
  motion: '#a78bfa',
  mask: '#f472b6',
  detrend: '#f5b942',
  zscore: '#3ecf8e',
};
const MOTION_COLORS = ['#6ea8ff', '#3ecf8e', '#f5b942', '#a78bfa', '#f472b6', '#8bd3ff'];
const MOTION_LABELS = ['x mm', 'y mm', 'z mm', 'pitch °', 'roll °', 'yaw °'];

let S = { status: { bridge: 'waiting' }, runs: [], volumes: [], trials: [], alerts: [] };
const trialByKey = new Map();
// As the server's record (src/server/dashboard-state.ts DASH_LIMITS): an 8-hour session stays within bounds here too.
const LIMITS = { volumes: 3000, alerts: 200, trials: 1000, trialImages: 100 };
// A run is (subject, session, run): labels repeat across sessions and subjects.
const keyOf = (t) => `${t.subject ?? ''}/${t.session ?? ''}/${t.run}/${t.trial}`;
function dropImages(t) {
  delete t.stimulusImage;
  if (t.reconstruction && t.reconstruction.image) t.reconstruction = { ...t.reconstruction, image: undefined };
}
function keepsImages(t) {
  for (let i = S.trials.length - 1; i >= Math.max(0, S.trials.length - LIMITS.trialImages); i--)
    if (S.trials[i] === t) return true;
  return false;
}
const dirty = new Set(['all']);

const token = new URLSearchParams(location.search).get('token') || undefined;
const socket = io({ auth: token ? { token } : {}, transports: ['websocket', 'polling'] });

socket.on('connect', () => setBadge($('conn'), 'on', 'dashboard: live'));
socket.on('disconnect', () => setBadge($('conn'), 'off', 'dashboard: reconnecting…'));
socket.on('connect_error', (e) => setBadge($('conn'), 'bad', `dashboard: ${e.message}`));
socket.on('snapshot', (snap) => {
  S = snap;
  trialByKey.clear();
  for (const t of S.trials) trialByKey.set(keyOf(t), t);
  $('trials').innerHTML = '';
  cardEls.clear();
  mark('all');
});
socket.on('status', (d) => {
  S.status = { ...S.status, ...d };
  mark('header');
});
socket.on('run', (r) => {
  const i = S.runs.findIndex((x) => x.run === r.run && x.session === r.session && x.subject === r.subject);
  if (i >= 0) S.runs[i] = r;
  else S.runs.push(r);
  mark('header');
});
socket.on('volume', (v) => {
  S.volumes.push(v);
  if (S.volumes.length > LIMITS.volumes) S.volumes.splice(0, S.volumes.length - LIMITS.volumes);
  mark('volumes');
});
socket.on('trial', (t) => {
  const key = keyOf(t);
  const prev = trialByKey.get(key);
  if (prev) {
    Object.assign(prev, t);
    if (!keepsImages(prev)) dropImages(prev);
  } else {
    const n = { ...t };
    trialByKey.set(key, n);
    S.trials.push(n);
    const fell = S.trials[S.trials.length - 1 - LIMITS.trialImages];
    if (fell) {
      dropImages(fell);
      dirtyTrials.add(keyOf(fell));
    }
    if (S.trials.length > LIMITS.trials) {
      for (const old of S.trials.splice(0, S.trials.length - LIMITS.trials)) {
        const k = keyOf(old);
        trialByKey.delete(k);
        dirtyTrials.delete(k);
        const el = cardEls.get(k);
        if (el) {
          el.remove();
          cardEls.delete(k);
        }
      }
    }
  }
  dirtyTrials.add(key);
  mark('trials');
});
socket.on('caption', (c) => {
  const t = trialByKey.get(keyOf(c));
  if (t) {
    t.caption = c.caption;
    if (!keepsImages(t)) dropImages(t);
    dirtyTrials.add(keyOf(c));
  }
  mark('trials');
});
// The reconstruction follows its caption (generated off the caption path) and fills in the same card.
socket.on('reconstruction', (r) => {
  const t = trialByKey.get(keyOf(r));
  if (t) {
    t.reconstruction = r.reconstruction;
    if (!keepsImages(t)) dropImages(t);
    dirtyTrials.add(keyOf(r));
  }
  mark('trials');
});
socket.on('metrics', (m) => {
  S.metrics = m;
  mark('metrics');
});
socket.on('alert', (a) => {
  S.alerts.push(a);
  if (S.alerts.length > LIMITS.alerts) S.alerts.splice(0, S.alerts.length - LIMITS.alerts);
  mark('alerts');
});
socket.on('mosaic', (m) => {
  S.mosaic = m;
  mark('mosaic');
});

const dirtyTrials = new Set();
let scheduled = false;
function mark(what) {
  dirty.add(what);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(render);
  }
}

function setBadge(el, cls, text) {
  el.className = `badge ${cls}`;
  el.textContent = text;
}

function currentRun() {
  return S.runs[S.runs.length - 1];
}

function render() {
  scheduled = false;
  const all = dirty.has('all');
  if (all || dirty.has('header') || dirty.has('volumes')) renderHeader();
  if (all || dirty.has('volumes') || dirty.has('trials')) renderCharts();
  if (all || dirty.has('mosaic')) renderMosaic();
  if (all || dirty.has('metrics') || dirty.has('trials')) renderMetrics();
  if (all || dirty.has('alerts')) renderAlerts();
  if (all || dirty.has('trials')) renderTrials(all);
  dirty.clear();
}

function renderHeader() {
  const st = S.status || {};
  const bridgeCls =
    st.bridge === 'connected' || st.bridge === 'streaming' ? 'on' : st.bridge === 'disconnected' ? 'bad' : 'off';
  setBadge($('bridge'), bridgeCls, `scanner: ${st.bridge}${st.detail ? ` · ${st.detail}` : ''}`);
  if (st.model) setBadge($('model'), 'on', `model: ${st.model.name} · ${st.model.provider}`);
  const run = currentRun();
  if (!run) return;
  $('runname').textContent = `sub-${run.subject} · ${run.run}`;
  const vols = S.volumes.filter((v) => v.run === run.run);
  const last = vols[vols.length - 1];
  const n = last ? last.index + 1 : 0;
  const pct = run.expected ? Math.min(100, (100 * n) / run.expected) : 0;
  $('progressbar').style.width = `${pct}%`;
  const t = last ? last.t : 0;
  $('trclock').textContent = `TR ${n}${run.expected ? `/${run.expected}` : ''} · ${t.toFixed(1)} s`;
}

function renderCharts() {
  const run = currentRun();
  const vols = run ? S.volumes.filter((v) => v.run === run.run) : [];
  const xs = vols.map((v) => v.index);
  const stages = [...new Set(vols.flatMap((v) => Object.keys(v.stages || {})))];
  const lat = stages.map((s) => ({ xs, ys: vols.map((v) => v.stages[s]), color: STAGE_COLORS[s] || '#ccc', label: s }));
  lat.push({ xs, ys: vols.map((v) => v.totalMs), color: '#ffffff', label: 'total', width: 2 });
  const lagVals = vols.map((v) => v.lagMs).filter(Number.isFinite);
  lineChart($('latency'), lat, { yMin: 0, xLabel: 'volume', empty: 'no volumes yet' });
  legend(
    $('latlegend'),
    lat.map((s) => ({ color: s.color, label: s.label })),
  );
  if (vols.length) {
    const tot = vols.map((v) => v.totalMs).sort((a, b) => a - b);
    const p50 = tot[Math.floor(tot.length / 2)];
    const lastLag = lagVals.length ? lagVals[lagVals.length - 1] : undefined;
    $('latinfo').textContent =
      `p50 ${p50.toFixed(1)} ms${lastLag !== undefined ? ` · lag ${(lastLag / 1000).toFixed(2)} s` : ''}`;
  }
  const mv = vols.filter((v) => v.motion);
  const mxs = mv.map((v) => v.index);
  const motion = [0, 1, 2, 3, 4, 5].map((k) => ({
    xs: mxs,
    ys: mv.map((v) => (k < 3 ? v.motion.trans[k] : v.motion.rot[k - 3])),
    color: MOTION_COLORS[k],
    label: MOTION_LABELS[k],
  }));
  lineChart($('motion'), motion, { empty: 'no motion estimates yet' });
  legend($('motionlegend'), [
    ...motion.map((s) => ({ color: s.color, label: s.label })),
    { color: '#ffffff', label: 'FD mm' },
    { color: '#ff6b6b', label: 'FD threshold' },
  ]);
  const thr = run && run.fdThresholdMm;
  const fd = mv.map((v) => v.motion.fd);
  lineChart($('fd'), [{ xs: mxs, ys: fd, color: '#ffffff', label: 'FD' }], {
    yMin: 0,
    hLines: thr ? [{ y: thr, color: '#ff6b6b', label: `FD ${thr} mm` }] : [],
    points: thr
      ? mv.filter((v) => v.motion.fd > thr).map((v) => ({ x: v.index, y: v.motion.fd, color: '#ff6b6b' }))
      : [],
    xLabel: 'volume',
    empty: 'no FD yet',
  });
  if (fd.length) {
    const over = thr ? fd.filter((x) => x > thr).length : 0;
    $('fdinfo').textContent = `FD max ${Math.max(...fd).toFixed(2)} mm${thr ? ` · ${over} over ${thr} mm` : ''}`;
  }
  const rv = vols.filter((v) => Number.isFinite(v.roi));
  const trials = run ? S.trials.filter((t) => t.run === run.run) : [];
  const tr = run ? run.tr : 1;
  lineChart($('roi'), [{ xs: rv.map((v) => v.t), ys: rv.map((v) => v.roi), color: '#3ecf8e', label: 'ROI' }], {
    vMarks: trials.map((t) => ({ x: t.onset, color: 'rgba(167,139,250,.35)' })),
    xLabel: 's',
    empty: 'no processed volumes yet',
    xMin: 0,
    xMax: Math.max(rv.length ? rv[rv.length - 1].t : 0, run && run.expected ? run.expected * tr : 0) || undefined,
  });
}

function renderMosaic() {
  if (!S.mosaic) return;
  $('mosaic').src = S.mosaic.image;
  $('mosaicinfo').textContent = `${S.mosaic.run} · volume ${S.mosaic.index}`;
}

function renderMetrics() {
  const body = $('metrics').querySelector('tbody');
  const m = S.metrics;
  const row = (name, r) =>
    `<tr><td>${name}</td>${['BLEU4', 'CIDEr', 'ROUGE_L'].map((k) => `<td class="big">${r && Number.isFinite(r[k]) ? r[k].toFixed(3) : '–'}</td>`).join('')}</tr>`;
  body.innerHTML = row('brain decoder', m && m.model) + row('ridge baseline', m && m.baseline);
  const decoded = S.trials.filter((t) => t.caption && !t.caption.error);
  $('metricsn').textContent = m ? `${m.n} trials with references` : 'waiting for captions';
  const lat = decoded.map((t) => t.caption.latencyMs).sort((a, b) => a - b);
  const conf = decoded.map((t) => t.caption.confidence);
  const p = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(0) : '–');
  $('stats').innerHTML =
    `decoded ${decoded.length} / ${S.trials.length} trials · decode latency p50 ${p(0.5)} ms, p99 ${p(0.99)} ms` +
    `<br>mean confidence ${conf.length ? (conf.reduce((a, b) => a + b, 0) / conf.length).toFixed(2) : '–'}`;
}

function renderAlerts() {
  const ul = $('alerts');
  ul.innerHTML = '';
  const items = S.alerts.slice(-100).reverse();
  for (const a of items) {
    const li = document.createElement('li');
    li.className = a.level;
    const tm = document.createElement('time');
    tm.textContent = new Date(a.at).toLocaleTimeString();
    li.append(tm, document.createTextNode(a.message));
    ul.append(li);
  }
  $('alertcount').textContent = S.alerts.length ? `${S.alerts.length}` : 'none';
}

function confColor(c) {
  const h = Math.round(120 * Math.max(0, Math.min(1, c)));
  return `hsl(${h}, 70%, 55%)`;
}

const cardEls = new Map();
function renderTrials(all) {
  const container = $('trials');
  const run = currentRun();
  const trials = S.trials;
  const keys = all ? trials.map(keyOf) : [...dirtyTrials];
  dirtyTrials.clear();
  for (const key of keys) {
    const t = trialByKey.get(key);
    if (!t) continue;
    let el = cardEls.get(key);
    if (!el) {
      el = document.createElement('article');
      el.className = 'trial';
      el.dataset.trial = String(t.trial);
      cardEls.set(key, el);
      container.prepend(el);
    }
    fillCard(el, t);
  }
  // Strip: trial onsets along the run, coloured by confidence once decoded.
  const strip = $('strip');
  const runTrials = run
    ? trials.filter(
        (t) =>
          t.run === run.run && (t.session ?? run.session) === run.session && (t.subject ?? run.subject) === run.subject,
      )
    : [];
  const end = Math.max(
    1,
    ...runTrials.map((t) => t.onset + t.duration),
    run && run.expected ? run.expected * run.tr : 0,
  );
  strip.innerHTML = '';
  for (const t of runTrials) {
    const s = document.createElement('span');
    s.style.left = `${(100 * t.onset) / end}%`;
    s.style.width = `${Math.max(0.3, (100 * t.duration) / end)}%`;
    s.style.background = t.caption ? (t.caption.error ? '#ff6b6b' : confColor(t.caption.confidence)) : '#3a4564';
    s.title = `trial ${t.trial} · ${t.stimulusId}${t.caption ? ` · ${t.caption.text}` : ''}`;
    strip.append(s);
  }
  const decoded = runTrials.filter((t) => t.caption).length;
  $('trialinfo').textContent = `${decoded} decoded / ${runTrials.length} presented`;
}

function esc(s) {
  return String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
}

function fillCard(el, t) {
  const c = t.caption;
  const flags = [...new Set([...(c ? c.flags : [])])];
  el.classList.toggle('flagged', flags.length > 0);
  const stim = t.stimulusImage
    ? `<img class="stim" src="${t.stimulusImage}" alt="stimulus ${esc(t.stimulusId)}">`
    : '<div class="ph"></div>';
  const r = t.reconstruction;
  const rec = r && r.image ? `<img class="recon" src="${r.image}" alt="reconstruction">` : '<div class="ph"></div>';
  // Under the image: its generation time once it is there, else what it is waiting for or why there is none.
  const gen = r
    ? r.error
      ? `<div class="gen failed" title="${esc(r.error)}">no image: ${esc(r.error)}</div>`
      : r.ms !== undefined
        ? `<div class="gen">generated in ${r.ms.toFixed(0)} ms</div>`
        : ''
    : c && !c.error
      ? '<div class="gen pending">generating…</div>'
      : '';
  const text = c
    ? c.error
      ? `<div class="caption pending">not decoded: ${esc(c.error)}</div>`
      : `<div class="caption">${esc(c.text || '(empty caption)')}</div>`
    : '<div class="caption pending">decoding after the haemodynamic delay…</div>';
  const conf =
    c && !c.error
      ? `<div class="conf" title="confidence ${c.confidence.toFixed(2)}"><div style="width:${(100 * c.confidence).toFixed(0)}%;background:${confColor(c.confidence)}"></div></div>`
      : '';
  const meta =
    c && !c.error ? `<span>conf ${c.confidence.toFixed(2)}</span><span>${c.latencyMs.toFixed(0)} ms</span>` : '';
  const refs =
    t.references && t.references.length
      ? `<ul class="refs">${t.references
          .slice(0, 5)
          .map((r) => `<li>${esc(r)}</li>`)
          .join('')}</ul>`
      : '';
  const base = c && c.baseline ? `<div class="base">ridge baseline: ${esc(c.baseline)}</div>` : '';
  // A repeated stimulus: the caption of the mean of its presentations so far, shown as such beside the single trial's.
  const mean =
    c && c.mean
      ? `<div class="mean" title="decoded from the mean response of ${c.mean.of} presentations">mean of ${c.mean.of} presentations: ${esc(c.mean.caption)}</div>`
      : '';
  const shown = c && c.presentation > 1 ? `<span class="pres">presentation ${c.presentation}</span>` : '';
  el.innerHTML =
    `<figure>${stim}<figcaption>stimulus</figcaption></figure><figure>${rec}<figcaption>reconstruction</figcaption>${gen}</figure>` +
    `<div><div class="head"><span>trial ${t.trial}</span><span>${esc(t.stimulusId)}</span><span>${t.onset.toFixed(1)} s</span>${shown}${meta}${flags.map((f) => `<span class="flag">⚑ ${esc(f)}</span>`).join('')}</div>` +
    `${text}${conf}${mean}${base}${refs}</div>`;
}

window.addEventListener('resize', () => mark('all'));
