import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scoreCaptions } from '../../src/metrics/index.js';
import { root } from './brainhub.js';

const bin = join(root, 'bin', 'mindsemantix.mjs');
const dir = mkdtempSync(join(tmpdir(), 'msx-eval-'));
const REFS = {
  a: ['A dog runs on the grass.', 'a brown dog running'],
  b: ['Two people (a man and a woman) eat pizza.', 'people eating'],
  c: ['A red bus on a city street.', 'a bus parked by the road', 'The bus is red.'],
};
const CANDS = { a: 'a dog running on grass', b: 'A man eats pizza.', c: 'a red bus' };

function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}
const refs = file('r.json', REFS);
const cands = file('c.json', CANDS);

function cli(...args: string[]) {
  return spawnSync(process.execPath, [bin, 'eval', ...args], { encoding: 'utf8', cwd: root });
}
function oneLineError(r: ReturnType<typeof cli>, code: number, re: RegExp): void {
  assert.equal(r.status, code, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, re);
}

test('eval captions --json prints the contract object on the 0..1 scale', () => {
  const r = cli('captions', '--refs', refs, '--cands', cands, '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, number>;
  assert.deepEqual(Object.keys(out), [
    'BLEU1',
    'BLEU2',
    'BLEU3',
    'BLEU4',
    'METEOR',
    'ROUGE_L',
    'CIDEr',
    'SentenceScore',
  ]);
  for (const [k, v] of Object.entries(out))
    assert.ok(Number.isFinite(v) && v >= 0 && (k === 'CIDEr' || v <= 1), `${k}=${v}`);
  // The offline evaluator (pycocoevalcap) and the live TS metrics agree on the same files.
  const ts = scoreCaptions(REFS, CANDS);
  for (const k of ['BLEU1', 'BLEU2', 'BLEU3', 'BLEU4', 'ROUGE_L', 'CIDEr'] as const)
    assert.ok(Math.abs(out[k] - ts[k]) < 1e-9, k);
});

test('eval captions prints a readable table by default', () => {
  const r = cli('captions', '--refs', refs, '--cands', cands, '--metrics', 'BLEU,CIDEr');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^BLEU-4\s+0\.\d{4}\s+\d+\.\d\d$/m);
  assert.match(r.stdout, /^CIDEr-D\s+\d\.\d{4}/m);
  assert.match(r.stdout, /3 images/);
  assert.doesNotMatch(r.stdout, /METEOR|SentenceScore/);
});

test('eval input mistakes are one clear line and a non-zero exit, before any Python starts', () => {
  oneLineError(
    cli('captions', '--refs', join(dir, 'nope.json'), '--cands', cands),
    2,
    /references file .*nope\.json does not exist/,
  );
  oneLineError(
    cli('captions', '--refs', refs, '--cands', file('bad.json', '{"a": "x",')),
    2,
    /candidates file .*bad\.json is not valid JSON/,
  );
  oneLineError(
    cli('captions', '--refs', refs, '--cands', file('extra.json', { ...CANDS, zz: 'x' })),
    2,
    /1 candidate id\(s\) in .* are not in .*\("zz"\)/,
  );
  oneLineError(
    cli('captions', '--refs', refs, '--cands', file('part.json', { a: 'a dog' })),
    2,
    /2 of 3 reference id\(s\) have no caption .*--subset/,
  );
  oneLineError(
    cli('captions', '--refs', refs, '--cands', refs),
    2,
    /must map to one caption string \(got a list of 2; are --refs and --cands swapped\?\)/,
  );
  oneLineError(
    cli('captions', '--refs', file('list.json', [['a']]), '--cands', cands),
    2,
    /must be a JSON object \{id: \[reference, \.\.\.\]\}/,
  );
  oneLineError(cli('captions', '--refs', refs, '--cands', cands, '--metrics', 'BLUE'), 2, /unknown metric "BLUE"/);
  oneLineError(cli('captions', '--cands', cands), 2, /--refs is required/);
  oneLineError(cli('images', '--refs', refs, '--cands', cands), 2, /unknown evaluation "images"/);
});

test('eval --subset scores only the captioned ids', () => {
  const r = cli(
    'captions',
    '--refs',
    refs,
    '--cands',
    file('part2.json', { a: CANDS.a, c: CANDS.c }),
    '--subset',
    '--json',
    '--metrics',
    'ROUGE_L',
  );
  assert.equal(r.status, 0, r.stderr);
  const sub = scoreCaptions({ a: REFS.a, c: REFS.c }, { a: CANDS.a, c: CANDS.c });
  assert.ok(Math.abs((JSON.parse(r.stdout) as { ROUGE_L: number }).ROUGE_L - sub.ROUGE_L) < 1e-9);
});

test('eval --help documents the command', () => {
  const r = spawnSync(process.execPath, [bin, 'eval', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /eval captions --refs R\.json --cands C\.json \[--json\]/);
});
