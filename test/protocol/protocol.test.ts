import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeVolumeFrame,
  encodeVolumeFrame,
  parseClientMessage,
  ProtocolError,
  PROTOCOL_VERSION,
  type VolumeFrameHeader,
} from '../../src/protocol/index.js';

const header: VolumeFrameHeader = {
  v: 1,
  session: '01',
  run: 'task-vision_run-01',
  index: 7,
  seq: 9,
  tr: 1.5,
  acquisitionTime: 10.5,
  seenAt: 1000.5,
  readAt: 1001,
  sentAt: 1002,
};

test('a volume frame round-trips: MSXV, header length, JSON header, NIfTI bytes untouched', () => {
  const nifti = Uint8Array.from({ length: 400 }, (_, i) => i & 255);
  const f = encodeVolumeFrame(header, nifti);
  assert.equal(f.subarray(0, 4).toString('latin1'), 'MSXV');
  assert.equal(f.readUInt32LE(4), Buffer.byteLength(JSON.stringify(header)));
  const d = decodeVolumeFrame(f);
  assert.deepEqual(d.header, header);
  assert.deepEqual(Array.from(d.nifti), Array.from(nifti));
});

test('frames with a wrong magic, a lying header length, another version or bad fields are refused with a sentence', () => {
  const good = encodeVolumeFrame(header, new Uint8Array(10));
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof ProtocolError);
      return `${e.code}: ${e.message}`;
    }
    return 'accepted';
  };
  const wrong = Buffer.from(good);
  wrong.write('MSXW', 0, 'latin1'); // one letter off the magic
  assert.match(
    code(() => decodeVolumeFrame(wrong)),
    /^bad-frame: .*MSXV/,
  );
  const lying = Buffer.from(good);
  lying.writeUInt32LE(1e6, 4);
  assert.match(
    code(() => decodeVolumeFrame(lying)),
    /^bad-frame: .*larger than the frame/,
  );
  assert.match(
    code(() => decodeVolumeFrame(encodeVolumeFrame({ ...header, v: 2 }, new Uint8Array(1)))),
    /^unsupported-version: .*version 2.*version 1/,
  );
  assert.match(
    code(() => decodeVolumeFrame(encodeVolumeFrame({ ...header, index: -1 }, new Uint8Array(1)))),
    /^bad-message: .*"index" must be a finite integer ≥ 0/,
  );
  assert.match(
    code(() => decodeVolumeFrame(encodeVolumeFrame({ ...header, run: '../../etc' }, new Uint8Array(1)))),
    /^bad-message: .*"run" must be a label of 1 to 256 letters, digits, "_" and "-".*\(got "\.\.\/\.\.\/etc"\)/,
  );
  assert.match(
    code(() => decodeVolumeFrame(Buffer.from([1, 2]))),
    /^bad-frame: .*too short/,
  );
});

test('client messages are validated once at entry', () => {
  const start = {
    type: 'run-start',
    session: '01',
    run: 'task-a_run-01',
    subject: 's1',
    task: 'a',
    tr: 2,
    dims: [4, 4, 4],
    voxelSize: [2, 2, 2],
    affine: Array(16).fill(0),
  };
  assert.equal(parseClientMessage(JSON.stringify(start)).type, 'run-start');
  assert.deepEqual(parseClientMessage(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, client: 'x' })), {
    type: 'hello',
    v: 1,
    client: 'x',
    token: undefined,
  });
  const bad: [unknown, RegExp][] = [
    [{ type: 'nope' }, /^unknown-type/],
    [{ ...start, tr: 0 }, /"tr" must be a finite number ≥ 0.001/],
    [{ ...start, dims: [4, 4, 0] }, /"dims" must be an array of 3 finite positive integers/],
    [{ ...start, affine: [1, 2] }, /"affine" must be an array of 16/],
    [
      { type: 'event', session: '01', run: 'r', trial: 0, onset: 1, duration: 1, stimulusId: 'x', references: 'a cat' },
      /"references" must be an array/,
    ],
    [{ type: 'run-end', session: '01', run: 'r', volumes: 3.5, events: 0 }, /"volumes" must be a finite integer/],
    [{ type: 'hello', v: 7, client: 'x' }, /^unsupported-version/],
    [[1, 2], /must be a JSON object/],
  ];
  for (const [m, re] of bad) {
    assert.throws(
      () => parseClientMessage(JSON.stringify(m)),
      (e: unknown) => e instanceof ProtocolError && re.test(`${e.code}: ${e.message}`),
      JSON.stringify(m),
    );
  }
  assert.throws(() => parseClientMessage('{oops'), /not valid JSON/);
});
