// End to end in a real browser: `mindsemantix demo` (serve + replay + pipeline + dashboard) on a session that fits the
// tiny random bundle; Chromium (Debian's, driven by playwright-core) must show every trial's caption, confidence,
// reconstruction and stimulus image, the charts and metrics; a browser joining late gets the same session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, tinyBundle } from '../inference/tinyBundle.js';
import { writeSyntheticSession, type SyntheticSession } from './syntheticSession.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let work: string;
let session: SyntheticSession;
let demo: ChildProcess;
let url: string;
let browser: BrowserContext;
const stdout: string[] = [];
const stderr: string[] = [];

/** The tiny bundle with the prompt suffix dropped, so its random LM writes input-dependent (non-empty) captions. */
function bundleVariant(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src)) if (e !== 'manifest.json') symlinkSync(join(src, e), join(dst, e));
  const m = JSON.parse(readFileSync(join(src, 'manifest.json'), 'utf8'));
  m.generation.suffix_ids = [];
  writeFileSync(join(dst, 'manifest.json'), JSON.stringify(m));
}

before(async () => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: run \`npm test\` (its bootstrap installs chromium from scripts/apt-packages.txt)`,
  );
  work = mkdtempSync(join(tmpdir(), 'msx-e2e-'));
  const tiny = tinyBundle();
  const bundle = join(work, 'bundle');
  bundleVariant(tiny, bundle);
  session = await writeSyntheticSession(join(work, 'session'), join(tiny, 'masks', 'sub-sim01_roi-mask.nii.gz'), {
    trials: 6,
  });
  demo = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'mindsemantix.mjs'),
      'demo',
      '--session',
      session.dir,
      '--models',
      bundle,
      '--speed',
      '6',
      '--port',
      '0',
      '--record',
      join(work, 'record'),
      '--json',
      '--no-meteor',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  demo.stdout!.on('data', (b: Buffer) => stdout.push(b.toString()));
  demo.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`demo printed no dashboard URL:\n${stderr.join('')}`)), 60_000);
    demo.stderr!.on('data', () => {
      const m = /dashboard at (http:\/\/\S+)/.exec(stderr.join(''));
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    demo.on('exit', (code) => reject(new Error(`demo exited (${code}) early:\n${stderr.join('')}`)));
  });
  // A fresh profile per run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(join(work, 'chrome'), {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    viewport: { width: 1440, height: 1100 },
  });
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    demo.kill('SIGINT');
    await new Promise((r) => demo.once('exit', r));
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

async function decodedCount(page: Page): Promise<number> {
  return page.locator('.trial .caption:not(.pending)').count();
}

test('the dashboard shows every decoded trial live, with images and metrics, and saves a screenshot', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.locator('#conn.on').waitFor({ timeout: 15_000 });
  await page.waitForFunction(
    `document.querySelectorAll('.trial .caption:not(.pending)').length >= ${session.trials}`,
    undefined,
    { timeout: 120_000 },
  );
  assert.equal(await decodedCount(page), session.trials);
  // each card: a caption text, a confidence bar, a reconstruction and the stimulus image, references
  const captions = await page.locator('.trial .caption').allInnerTexts();
  assert.ok(
    captions.some((c) => c.trim().length > 0 && c !== '(empty caption)'),
    captions.join(' | '),
  );
  await page.waitForFunction(`document.querySelectorAll('img.stim').length >= ${session.trials}`, undefined, {
    timeout: 20_000,
  });
  // the reconstruction follows its caption: wait for every one, each with its generation time under it
  await page.waitForFunction(`document.querySelectorAll('img.recon').length >= ${session.trials}`, undefined, {
    timeout: 30_000,
  });
  assert.equal(await page.locator('img.recon').count(), session.trials);
  const gens = await page.locator('.trial figure .gen').allInnerTexts();
  assert.equal(gens.length, session.trials);
  for (const g of gens) assert.match(g, /^generated in \d+ ms$/);
  assert.equal(await page.locator('.trial figure .gen.failed').count(), 0);
  assert.equal(await page.locator('.trial .conf').count(), session.trials);
  assert.ok((await page.locator('.trial .refs li').count()) >= session.trials * 5);
  // a stimulus shown again: the caption of the mean of its presentations so far, labelled as such
  assert.match((await page.locator('.trial .mean').allInnerTexts()).join(' | '), /mean of 2 presentations: \S/);
  const reconOk = await page.evaluate(
    `[...document.querySelectorAll('img.recon')].every((i) => i.complete && i.naturalWidth === 256 && i.width === 256)`,
  );
  assert.ok(reconOk, 'reconstructions decode as images, 256 px wide and shown at that size');
  const stimOk = await page.evaluate(`[...document.querySelectorAll('img.stim')].every((i) => i.width === 256)`);
  assert.ok(stimOk, "the stimulus is shown at the reconstruction's size beside it");
  // header, charts, mosaic, metrics
  assert.match(await page.locator('#runname').innerText(), /sub-sim01 · task-vision_run-01/);
  await page.waitForFunction(`document.getElementById('mosaic').naturalWidth > 0`, undefined, { timeout: 20_000 });
  await page.waitForFunction(`/\\d\\.\\d{3}/.test(document.querySelector('#metrics tbody').textContent)`, undefined, {
    timeout: 20_000,
  });
  assert.match(
    await page.locator('#trialinfo').innerText(),
    new RegExp(`${session.trials} decoded / ${session.trials} presented`),
  );
  assert.match(await page.locator('#model').innerText(), /tiny-random · cpu/);
  assert.deepEqual(errors, []);
  const shotDir = join(tmpdir(), 'mindsemantix-e2e');
  mkdirSync(shotDir, { recursive: true });
  const shot = join(shotDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(readFileSync(shot).length > 20_000);
  process.stderr.write(`e2e: dashboard screenshot saved to ${shot}\n`);
  // the demo printed the same trials on stdout, one CONTRACT JSON object per line
  const lines = () =>
    stdout
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const printed = lines().filter((l) => l.type === 'trial');
  assert.equal(printed.length, session.trials);
  const shown = await page.locator('.trial .caption').allInnerTexts();
  for (const t of printed) {
    assert.deepEqual(Object.keys(t).slice(0, 8), [
      'type',
      'run',
      'trial',
      'stimulus',
      'caption',
      'references',
      'confidence',
      'latency_ms',
    ]);
    assert.ok(
      shown.includes((t.caption as string) || '(empty caption)'),
      `printed caption "${t.caption}" is on the dashboard`,
    );
  }
  const deriv = join(work, 'record', 'derivatives', 'mindsemantix-decoder', 'sub-sim01', 'ses-01');
  await waitFor(
    () =>
      existsSync(join(deriv, `sub-sim01_ses-01_${session.run}_captions.tsv`)) &&
      readFileSync(join(deriv, `sub-sim01_ses-01_${session.run}_captions.tsv`), 'utf8')
        .trim()
        .split('\n').length ===
        session.trials + 1,
  );
  await waitFor(() => existsSync(join(deriv, 'recon')) && readdirSync(join(deriv, 'recon')).length === session.trials);
  assert.equal(
    readFileSync(join(deriv, `sub-sim01_ses-01_${session.run}_recons.tsv`), 'utf8')
      .trim()
      .split('\n').length,
    session.trials + 1,
  );
  await page.close();
  // then the summary line (METEOR, which runs Java through models/, is left out here for time)
  await waitFor(() => lines().some((l) => l.type === 'summary'), 30_000);
  const summary = lines().find((l) => l.type === 'summary') as Record<string, Record<string, unknown> & number>;
  assert.equal(summary.trials, session.trials);
  assert.equal(summary.decoded, session.trials);
  for (const k of ['BLEU1', 'BLEU4', 'ROUGE_L', 'CIDEr']) assert.equal(typeof summary.metrics[k], 'number', k);
  assert.equal(summary.baseline.name, 'ridge-retrieval');
  assert.equal(typeof summary.baseline.CIDEr, 'number');
  assert.deepEqual(Object.keys(summary.latency_ms), ['volume_p50', 'volume_p99', 'decode_p50', 'decode_p99']);
  assert.deepEqual(summary.volumes, { received: session.volumes, processed: session.volumes, lost: 0 });
  assert.ok((summary.realtime_factor as number) > 1);
});

test('a browser that joins after the run receives the whole session', async () => {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(
    `document.querySelectorAll('.trial .caption:not(.pending)').length >= ${session.trials}`,
    undefined,
    { timeout: 15_000 },
  );
  assert.equal(await page.locator('img.recon').count(), session.trials);
  assert.equal(
    (await page.locator('.trial figure .gen').allInnerTexts()).filter((g) => /^generated in \d+ ms$/.test(g)).length,
    session.trials,
  );
  assert.match(await page.locator('#trclock').innerText(), new RegExp(`TR ${session.volumes}/${session.volumes}`));
  await page.close();
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('`serve` (its own CLI) shows a run replayed by the `replay` CLI on its dashboard, stimulus images included', async () => {
  const bundle = join(work, 'bundle');
  const serve = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'mindsemantix.mjs'), 'serve', '--port', '0', '--models', bundle],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  serve.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  try {
    await waitFor(() => /dashboard at (http:\S+)/.test(err) && /decoding on cpu/.test(err), 60_000);
    const dash = /dashboard at (http:\S+)/.exec(err)![1];
    const bridge = /ready at (ws:\S+)/.exec(err)![1];
    const page = await browser.newPage();
    await page.goto(dash);
    await page.locator('#conn.on').waitFor({ timeout: 15_000 });
    const replay = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'mindsemantix.mjs'), 'replay', session.dir, '--server', bridge, '--speed', 'max'],
      { cwd: ROOT, stdio: 'ignore' },
    );
    assert.equal(await new Promise((r) => replay.on('exit', r)), 0);
    await page.waitForFunction(
      `document.querySelectorAll('.trial .caption:not(.pending)').length >= ${session.trials}`,
      undefined,
      { timeout: 60_000 },
    );
    // the reconstructions follow their captions
    await page.waitForFunction(`document.querySelectorAll('img.recon').length >= ${session.trials}`, undefined, {
      timeout: 30_000,
    });
    assert.equal(await page.locator('img.recon').count(), session.trials);
    assert.equal(
      (await page.locator('.trial figure .gen').allInnerTexts()).filter((g) => /^generated in \d+ ms$/.test(g)).length,
      session.trials,
    );
    // the stimulus images came over the protocol (serve cannot open the replay's paths)
    await page.waitForFunction(
      `[...document.querySelectorAll('img.stim')].filter((i) => i.complete && i.naturalWidth > 0).length >= ${session.trials}`,
      undefined,
      { timeout: 20_000 },
    );
    assert.match(await page.locator('#bridge').innerText(), /replay/);
    await page.close();
  } finally {
    serve.kill('SIGINT');
    await new Promise((r) => serve.once('exit', r));
  }
});
