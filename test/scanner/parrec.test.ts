// Philips PAR/REC against nibabel's parrec loader, on the real Philips EPI phantom nibabel ships.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readScannerFile, type ReadResult } from '../../src/scanner/index.js';
import { maxDiff, nibData, nibReadMany } from './oracle.js';
import { splitXtc } from './xtc.js';

const PHANTOM = join(nibData, 'phantom_EPI_asc_CLEAR_2_1.PAR');
let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'parrec-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function complete(r: ReadResult): Extract<ReadResult, { status: 'complete' }> {
  assert.equal(r.status, 'complete', r.status !== 'complete' ? r.reason : '');
  return r as Extract<ReadResult, { status: 'complete' }>;
}

test('PAR/REC phantom: voxels identical to nibabel (dv and fp scaling, per-image scaling), affine within 1e-4 mm, TR, order', () => {
  const files = [PHANTOM, join(nibData, 'phantom_varscale.PAR')];
  for (const [kind, scaling] of [
    ['parrec', 'dv'],
    ['parrec-fp', 'fp'],
  ] as const) {
    const oracle = nibReadMany(kind, files);
    files.forEach((f, i) => {
      const o = oracle[i];
      assert.equal(o.error, undefined);
      const r = complete(readScannerFile(f, { parrecScaling: scaling }));
      assert.equal(r.format, 'parrec');
      assert.equal(r.volumes.length, 3);
      assert.deepEqual(o.dims, [64, 64, 9, 3]);
      const n = 64 * 64 * 9;
      r.volumes.forEach((v, t) => {
        assert.deepEqual(v.dims, [64, 64, 9]);
        assert.equal(v.volumeIndex, t);
        assert.equal(v.tr, o.tr);
        assert.equal(v.epi, true);
        const ad = maxDiff(v.affine, o.affine);
        assert.ok(ad < 1e-4, `${f} ${scaling}: affine differs by ${ad}`);
        assert.equal(
          maxDiff(v.data, o.data!.subarray(t * n, (t + 1) * n)),
          0,
          `${f} ${scaling} volume ${t}: voxels differ`,
        );
      });
      assert.deepEqual(r.volumes[0].voxelSize, o.zooms);
    });
  }
});

test('PAR/REC affine equals nibabel for transverse, sagittal and coronal stacks with angulations and off-centres, V4 and V4.1 headers', () => {
  const names = [
    'Phantom_EPI_3mm_cor_20APtrans_15RLrot_SENSE_15_1',
    'Phantom_EPI_3mm_cor_SENSE_8_1',
    'Phantom_EPI_3mm_sag_15AP_SENSE_13_1',
    'Phantom_EPI_3mm_sag_15FH_SENSE_12_1',
    'Phantom_EPI_3mm_sag_15RL_SENSE_11_1',
    'Phantom_EPI_3mm_tra_-30AP_10RL_20FH_SENSE_14_1',
    'Phantom_EPI_3mm_tra_15FH_SENSE_9_1',
    'phantom_fake_v4',
    'phantom_fake_v4_1',
    'variant_v4_2_header',
  ];
  // these headers ship without their REC: give each a REC of the size its image lines need (nibabel reads it too)
  const paths = names.map((n) => {
    const par = join(dir, `${n}.PAR`);
    copyFileSync(join(nibData, `${n}.PAR`), par);
    const lines = readFileSync(par, 'latin1')
      .split('\n')
      .filter((l) => /^\s*\d/.test(l) && !l.startsWith('.'));
    const t = lines[0].trim().split(/\s+/).map(Number);
    const rec = new Uint16Array(t[9] * t[10] * lines.length);
    for (let i = 0; i < rec.length; i++) rec[i] = (i * 7919) % 4096;
    writeFileSync(join(dir, `${n}.REC`), rec);
    return par;
  });
  const oracle = nibReadMany('parrec', paths);
  paths.forEach((p, i) => {
    const o = oracle[i];
    assert.equal(o.error, undefined, `${names[i]}: ${o.error}`);
    const r = complete(readScannerFile(p));
    const n = r.volumes[0].data.length;
    assert.equal(r.volumes.length, o.dims[3] ?? 1, names[i]);
    r.volumes.forEach((v, t) => {
      assert.ok(maxDiff(v.affine, o.affine) < 1e-4, `${names[i]}: affine differs by ${maxDiff(v.affine, o.affine)}`);
      assert.equal(maxDiff(v.data, o.data!.subarray(t * n, (t + 1) * n)), 0, `${names[i]} volume ${t}: voxels differ`);
    });
  });
});

test('PAR/REC split into XTC dumps (one pair per dynamic) reads back volume for volume, index from the dump number', () => {
  const out = join(dir, 'xtc');
  const pairs = splitXtc(PHANTOM, out);
  const [o] = nibReadMany('parrec', [PHANTOM]);
  const n = 64 * 64 * 9;
  pairs.forEach((par, t) => {
    const r = complete(readScannerFile(par));
    assert.equal(r.volumes.length, 1);
    assert.equal(r.volumes[0].volumeIndex, t);
    assert.equal(r.warnings, undefined, 'a one-dynamic dump is not a truncated export');
    assert.equal(maxDiff(r.volumes[0].data, o.data!.subarray(t * n, (t + 1) * n)), 0);
    assert.ok(maxDiff(r.volumes[0].affine, o.affine) < 1e-4);
  });
});

test('PAR/REC bad input: truncated REC, PAR without its end, unknown version, partial volume, missing REC, a REC alone; announced dynamics missing is a warning', () => {
  const par = readFileSync(PHANTOM, 'latin1');
  const rec = readFileSync(join(nibData, 'phantom_EPI_asc_CLEAR_2_1.REC'));
  const put = (name: string, p: string, r?: Uint8Array) => {
    writeFileSync(join(dir, `${name}.PAR`), p, 'latin1');
    if (r) writeFileSync(join(dir, `${name}.REC`), r);
    return join(dir, `${name}.PAR`);
  };
  const cut = readScannerFile(put('cut', par, rec.subarray(0, 100000)));
  assert.equal(cut.status, 'incomplete');
  assert.match(
    cut.status === 'incomplete' ? cut.reason : '',
    /^the REC holds 100000 bytes but its PAR lists images up to index 26 .* truncated or still being written\.$/,
  );
  const noEnd = readScannerFile(put('noend', par.slice(0, par.indexOf('# === END')), rec));
  assert.equal(noEnd.status, 'incomplete');
  const v3 = readScannerFile(
    put('v3', par.replace('Research image export tool     V4.2', 'Research image export tool     V3'), rec),
  );
  assert.deepEqual(v3, {
    status: 'invalid',
    reason: 'PAR version V3 is not one this reader knows (V4, V4.1, V4.2); export PAR/REC as V4.2.',
  });
  const lines = par.split('\n');
  const last = lines.findLastIndex((l) => /^\s+9\s+1\s+3\s/.test(l));
  const partial = readScannerFile(put('partial', lines.filter((_, i) => i !== last).join('\n'), rec));
  assert.equal(partial.status, 'invalid');
  assert.match(partial.status === 'invalid' ? partial.reason : '', /1 partial volume\(s\)/);
  const lonely = readScannerFile(put('lonely', par));
  assert.equal(lonely.status, 'incomplete');
  const recAlone = readScannerFile(join(nibData, 'phantom_EPI_asc_CLEAR_2_1.REC'));
  assert.equal(recAlone.status, 'invalid');
  const trunc = complete(readScannerFile(join(nibData, 'phantom_truncated.PAR')));
  assert.equal(trunc.volumes.length, 3);
  assert.deepEqual(trunc.warnings, ['the PAR announces 4 dynamics but lists 3; the 3 listed were read.']);
  const garbage = readScannerFile(put('garbage', par.replace(/^(\s+5\s+1\s+2\s+1\s+0\s+2\s+)13/m, '$1x'), rec));
  assert.equal(garbage.status, 'invalid');
});

const bin = join(new URL('../../../', import.meta.url).pathname, 'bin/mindsemantix.mjs');
const convert = (args: string[]) => spawnSync(process.execPath, [bin, 'convert', ...args], { encoding: 'utf8' });

test("convert: the PAR/REC phantom (one pair, or an XTC folder of dumps) becomes the 4-D NIfTI of nibabel's voxels and affine; a truncated REC is one clear line", () => {
  const [o] = nibReadMany('parrec', [PHANTOM]);
  const xtc = join(dir, 'convert-xtc');
  splitXtc(PHANTOM, xtc);
  for (const input of [PHANTOM, xtc]) {
    const out = join(dir, 'phantom.nii.gz');
    const r = convert([input, '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /64×64×9×3 float32, voxel 3\.75×3\.75×8 mm, TR 2 s \(parrec/);
    const [n] = nibReadMany('nifti', [out]);
    assert.deepEqual(n.dims, o.dims);
    assert.ok(maxDiff(n.affine, o.affine) < 1e-4, `affine ${n.affine} vs ${o.affine}`);
    assert.equal(maxDiff(n.data!, o.data!), 0);
    assert.equal(n.tr, 2);
  }
  writeFileSync(join(dir, 'short.PAR'), readFileSync(PHANTOM));
  writeFileSync(join(dir, 'short.REC'), readFileSync(join(nibData, 'phantom_EPI_asc_CLEAR_2_1.REC')).subarray(0, 5000));
  const bad = convert([join(dir, 'short.PAR'), '-o', join(dir, 'x.nii')]);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(
    bad.stderr,
    /^mindsemantix: convert: .*short\.PAR is incomplete: the REC holds 5000 bytes .* truncated or still being written\.$/m,
  );
});
