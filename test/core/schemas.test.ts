// The contracts in src/core/schemas: the committed and tiny bundles validate; the shared bad documents
// (test/fixtures/schemas/documents.json, also run by models/tests/test_schemas.py) are refused naming the same field
// as the Python side; the entry points word a refusal as one sentence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaCheck } from '../../src/core/schemas/validator.js';
import { UserError } from '../../src/core/errors.js';
import { BundleError, validateManifest } from '../../src/inference/bundle.js';
import { parseClientMessage, ProtocolError } from '../../src/protocol/validate.js';
import { parsePreprocessConfig } from '../../streams/config.js';
import { tinyBundle } from '../inference/tinyBundle.js';

const ROOT = new URL('../../../', import.meta.url).pathname;

type Path = (string | number)[];
interface Case {
  name?: string;
  schema: string;
  pointer?: string;
  base?: string;
  doc?: unknown;
  set?: [Path, unknown][];
  delete?: Path[];
  kind?: string;
  field?: string;
  expected?: string;
}
const fixtures = JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'schemas', 'documents.json'), 'utf8')) as {
  good: Case[];
  bad: Case[];
};

type Obj = Record<string | number, unknown>;
function documentOf(c: Case): unknown {
  if (!c.base) return c.doc;
  const [file, sub] = c.base.split('#');
  let doc = JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as Obj;
  for (const k of sub ? sub.split('/') : []) doc = doc[k] as Obj;
  const parentOf = (path: Path): Obj => path.slice(0, -1).reduce<Obj>((o, k) => o[k] as Obj, doc);
  for (const [path, value] of c.set ?? []) parentOf(path)[path[path.length - 1]] = value;
  for (const path of c.delete ?? []) delete parentOf(path)[path[path.length - 1]];
  return doc;
}

test('good documents validate: the committed default manifest, protocol examples, full preprocessing configs', () => {
  for (const c of fixtures.good) assert.equal(schemaCheck(c.schema, c.pointer)(documentOf(c)), undefined, c.name);
});

test('the tiny test bundle the exporter writes validates', () => {
  const dir = tinyBundle();
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  assert.equal(schemaCheck('bundle-manifest')(manifest), undefined);
  assert.equal(validateManifest(dir, manifest), manifest);
});

test('each shared bad document is refused: kind, field and description (same as models/tests/test_schemas.py)', () => {
  assert.ok(fixtures.bad.length >= 30);
  for (const c of fixtures.bad) {
    const p = schemaCheck(c.schema, c.pointer)(documentOf(c));
    assert.ok(p, `accepted: ${JSON.stringify(c).slice(0, 200)}`);
    assert.deepEqual(
      { kind: p.kind, field: p.field, expected: p.expected },
      { kind: c.kind, field: c.field, expected: c.expected },
    );
  }
});

test('the root protocol schema dispatches on "type"', () => {
  const check = schemaCheck('protocol-v1');
  assert.equal(check({ type: 'run-end', session: '01', run: 'r', volumes: 0, events: 0 }), undefined);
  assert.ok(check({ type: 'run-end', session: '01', run: 'r', volumes: -1, events: 0 }));
  assert.ok(check({ type: 'hello', v: 1 }));
  assert.equal(check({ type: 'nope' })?.field, 'type');
});

test('refusals at the entry points are one sentence naming the field and the fix', () => {
  const oneLine = (e: Error, re: RegExp) => {
    assert.match(e.message, re);
    assert.equal(e.message.split('\n').length, 1);
    return true;
  };
  const manifest = JSON.parse(readFileSync(join(ROOT, 'models', 'bundles', 'default', 'manifest.json'), 'utf8'));
  manifest.subjects.sim01.voxels = 0;
  assert.throws(
    () => validateManifest('/b', manifest),
    (e: Error) =>
      e instanceof BundleError &&
      oneLine(
        e,
        /^model bundle \/b: manifest\.json field "subjects\.sim01\.voxels" must be an integer ≥ 1 \(it is 0\); re-export the bundle with `python -m mindsemantix\.export`\.$/,
      ),
  );
  delete manifest.subjects.sim01.voxels;
  assert.throws(
    () => validateManifest('/b', manifest),
    (e: Error) => oneLine(e, /manifest\.json has no field "subjects\.sim01\.voxels" \(an integer ≥ 1\); re-export/),
  );
  assert.throws(
    () => validateManifest('/b', { ...manifest, version: 2 }),
    (e: Error) => oneLine(e, /has version 2 but this build reads version 1/),
  );
  assert.throws(
    () => parsePreprocessConfig({ tr: 2, response: { window: [-1, 4] } }),
    (e: Error) =>
      e instanceof UserError &&
      oneLine(
        e,
        /^preprocessing config: response\.window is \[-1,4\]; it must be \[start, end\] in seconds after onset with 0 ≤ start < end\.$/,
      ),
  );
  assert.throws(
    () => parsePreprocessConfig({ tr: 2, response: { lss_window: [3, 1] } }),
    (e: Error) => oneLine(e, /response\.lss_window is \[3,1\]; it must be \[start, end\]/),
  );
  assert.throws(
    () => parsePreprocessConfig({ tr: 2, zscore: { mode: 'running', window: 3 } }),
    (e: Error) => oneLine(e, /unknown field zscore\.window; known fields: mode, baseline_volumes\./),
  );
  assert.throws(
    () => parseClientMessage(JSON.stringify({ type: 'run-end', session: '01', run: 'r', volumes: 1 })),
    (e: Error) =>
      e instanceof ProtocolError &&
      e.code === 'bad-message' &&
      oneLine(e, /^run-end: "events" must be a finite integer ≥ 0 \(it is missing\)\.$/),
  );
});

test('defaults come from the schema and the sources are not altered', () => {
  const manifestBlock = { tr: 1.6, detrend: { mode: 'window', max_order: 2 } };
  const c = parsePreprocessConfig(manifestBlock);
  assert.deepEqual(manifestBlock, { tr: 1.6, detrend: { mode: 'window', max_order: 2 } });
  assert.equal(c.detrend.windowVolumes, 100);
  assert.equal(c.motion.samples, 10000);
  assert.deepEqual(c.response, { method: 'window-mean', window: [4, 8], lssWindow: [-40, 16], historySeconds: 60 });
  assert.equal(c.fdThresholdMm, 0.9);
});
