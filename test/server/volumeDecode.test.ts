// A gzip volume's NIfTI header is checked before its body is inflated, inflation stops at the size the header
// declares, and it runs off the event loop without letting later messages overtake the volume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import type { RunEnd } from '../../src/core/types.js';
import { startServer } from '../../src/server/index.js';
import { DEFAULT_LIMITS } from '../../src/server/limits.js';
import { inflateFramePayload } from '../../src/server/volumeDecode.js';
import { encodeVolumeFrame } from '../../src/protocol/frame.js';
import { niftiHeader } from '../../src/scanner/nifti.js';
import { captureLog, niftiVolume, rawClient, runInfo, waitFor } from './helpers.js';

/** A NIfTI-1 header for `dims` (int16) followed by `body` zero bytes, gzipped. */
function gzNifti(dims: [number, number, number], body: number): Uint8Array {
  const h = niftiHeader({ dims, affine: runInfo().affine as number[], tr: 1.5, datatype: 'int16' });
  return gzipSync(Buffer.concat([Buffer.from(h), Buffer.alloc(body)]), { level: 9 }); // niftiHeader includes the extension flag
}

test('the header is read before the body: dims beyond the limits are refused without inflating, a body beyond its header stops there', async () => {
  const limits = { ...DEFAULT_LIMITS, maxInflatedBytes: 64 * 1024 * 1024 };
  // Header says 2048×2048×2048 (beyond maxDim): refused as dims-too-large, not inflated.
  await assert.rejects(
    inflateFramePayload(gzNifti([2048, 2048, 2048], 1024), limits),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'dims-too-large');
      assert.match(e.message, /volume dims 2048×2048×2048 exceed the server limit/);
      return true;
    },
  );
  // Header says 8×8×8 int16 (1 376 bytes in all), body inflates to 40 MB: stopped at the declared size.
  await assert.rejects(
    inflateFramePayload(gzNifti([8, 8, 8], 40 * 1024 * 1024), limits),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'bad-volume');
      assert.match(e.message, /inflates to more than 1376 bytes, more than its NIfTI header declares/);
      return true;
    },
  );
  const ok = await inflateFramePayload(gzNifti([8, 8, 8], 8 * 8 * 8 * 2), limits);
  assert.equal(ok.length, 352 + 1024);
});

test('gzip volumes inflate off the event loop and in order: a run-end sent right behind them never overtakes them', async (t) => {
  const ends: RunEnd[] = [];
  const srv = await startServer({
    port: 0,
    log: captureLog().log,
    onHub: (h) => h.runEnds$.subscribe((e) => ends.push(e)),
  });
  t.after(() => srv.close());
  const info = runInfo({ subject: 'z01', dims: [40, 40, 30] });
  const c = await rawClient(srv.url, { type: 'hello', v: 1, client: 'raw' });
  c.ws.send(JSON.stringify({ type: 'run-start', ...info }));
  const n = 6;
  for (let i = 0; i < n; i++) {
    const h = {
      v: 1,
      session: info.session,
      run: info.run,
      index: i,
      seq: i,
      tr: info.tr,
      acquisitionTime: i * info.tr,
      sentAt: Date.now(),
    };
    c.ws.send(encodeVolumeFrame(h, gzipSync(niftiVolume(info, i))));
  }
  c.ws.send(
    encodeVolumeFrame(
      {
        v: 1,
        session: info.session,
        run: info.run,
        index: n,
        seq: n,
        tr: info.tr,
        acquisitionTime: 0,
        sentAt: Date.now(),
      },
      gzNifti([2048, 2048, 2048], 10),
    ),
  );
  c.ws.send(JSON.stringify({ type: 'run-end', session: info.session, run: info.run, volumes: n + 1, events: 0 }));
  await waitFor(() => ends.length === 1, 5000, 'run end');
  assert.equal(ends[0].accepted, n);
  assert.deepEqual(ends[0].missing, [[n, n + 1]], 'only the refused volume is missing');
  await waitFor(() => c.errors().length === 1, 3000, 'the refusal');
  assert.equal(c.errors()[0].code, 'dims-too-large');
  c.ws.close();
});
