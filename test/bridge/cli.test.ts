// The three commands as a user runs them: serve, bridge and replay as child processes over real sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { runPaths } from '../../src/server/recording.js';
import {
  bytesOf,
  cliChild,
  int16Volume,
  nibLoad,
  niftiVolume,
  root,
  runInfo,
  tempDir,
  waitFor,
} from '../server/helpers.js';

const bin = join(root, 'bin', 'mindsemantix.mjs');

const child = (args: string[]) => cliChild(args);

test('serve + bridge + replay from the command line: token auth, files streamed and recorded, clean stop on SIGINT, clear one-line errors', async (t) => {
  const dir = tempDir('cli');
  const tf = join(dir, 'token');
  writeFileSync(tf, 'cli-secret\n');
  const rec = join(dir, 'rec');
  const serve = child(['serve', '--port', '0', '--record', rec, '--token-file', tf]);
  t.after(() => {
    serve.p.kill('SIGKILL');
  });
  await waitFor(() => /ready at (ws:\S+)/.test(serve.err()), 15000, 'serve ready');
  const url = /ready at (ws:\S+)/.exec(serve.err())![1];

  const wrong = join(dir, 'wrong');
  writeFileSync(wrong, 'nope');
  const watch = join(dir, 'watch');
  mkdirSync(watch);
  const refused = spawnSync(
    process.execPath,
    [bin, 'bridge', '--watch', watch, '--server', url, '--token-file', wrong],
    { encoding: 'utf8', timeout: 15000 },
  );
  assert.equal(refused.status, 1);
  assert.match(
    refused.stderr.trim().split('\n').pop()!,
    /^mindsemantix: bridge: the server refused the connection: the token does not match/,
  );

  const info = runInfo({ dims: [7, 6, 5], tr: 2 });
  const bridge = child([
    'bridge',
    '--watch',
    watch,
    '--server',
    url,
    '--token-file',
    tf,
    '--subject',
    'cli',
    '--tr',
    '2',
  ]);
  t.after(() => {
    bridge.p.kill('SIGKILL');
  });
  for (let i = 0; i < 5; i++)
    writeFileSync(join(watch, `vol_${String(i + 1).padStart(4, '0')}.nii`), niftiVolume(info, i));
  const bold = runPaths(rec, 'cli', '01', 'task-vision_run-01').bold;
  await waitFor(() => /run task-vision_run-01/.test(serve.err()), 10000, 'run start');
  await new Promise((r) => setTimeout(r, 500));
  bridge.p.kill('SIGINT');
  assert.equal(await bridge.exited, 0, bridge.err());
  assert.match(bridge.err(), /5 volume\(s\) and 0 event\(s\) sent and acknowledged/);
  const { report, raw } = nibLoad(bold, true);
  assert.deepEqual(report.shape, [7, 6, 5, 5]);
  assert.ok(raw!.equals(Buffer.concat([0, 1, 2, 3, 4].map((i) => bytesOf(int16Volume(info.dims, i))))));

  // replay the recording into a second server: same voxels
  const rec2 = join(dir, 'rec2');
  const serve2 = child(['serve', '--port', '0', '--record', rec2]);
  t.after(() => {
    serve2.p.kill('SIGKILL');
  });
  await waitFor(() => /ready at (ws:\S+)/.test(serve2.err()), 15000, 'serve 2 ready');
  const url2 = /ready at (ws:\S+)/.exec(serve2.err())![1];
  const rep = spawnSync(process.execPath, [bin, 'replay', rec, '--server', url2, '--speed', 'max'], {
    encoding: 'utf8',
    timeout: 30000,
  });
  assert.equal(rep.status, 0, rep.stderr);
  assert.match(rep.stderr, /5 volume\(s\) and 0 event\(s\) of task-vision_run-01 acknowledged/);
  assert.ok(nibLoad(runPaths(rec2, 'cli', '01', 'task-vision_run-01').bold, true).raw!.equals(raw!));

  serve.p.kill('SIGTERM');
  serve2.p.kill('SIGTERM');
  assert.equal(await serve.exited, 0);
  assert.equal(await serve2.exited, 0);
});

test('serve refuses to expose itself without a token, and names a missing token file', () => {
  const open = spawnSync(process.execPath, [bin, 'serve', '--host', '0.0.0.0', '--port', '0'], {
    encoding: 'utf8',
    timeout: 15000,
  });
  assert.equal(open.status, 2);
  assert.match(
    open.stderr.trim(),
    /^mindsemantix: serve: binding 0\.0\.0\.0 exposes the server to the network; pass --token-file/,
  );
  const missing = spawnSync(process.execPath, [bin, 'serve', '--port', '0', '--token-file', '/nonexistent/tok'], {
    encoding: 'utf8',
    timeout: 15000,
  });
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  assert.match(missing.stderr, /cannot read token file \/nonexistent\/tok \(ENOENT\)/);
  const file = join(tempDir('notdir'), 'file');
  writeFileSync(file, 'x');
  const ro = spawnSync(process.execPath, [bin, 'serve', '--port', '0', '--record', join(file, 'rec')], {
    encoding: 'utf8',
    timeout: 15000,
  });
  assert.equal(ro.status, 1);
  assert.match(
    ro.stderr.trim(),
    /^mindsemantix: serve: cannot write to --record \S+\/file\/rec \(ENOTDIR\); choose a writable folder\.$/,
  );
  const rep = spawnSync(process.execPath, [bin, 'replay', '/nonexistent', '--server', 'ws://127.0.0.1:1'], {
    encoding: 'utf8',
    timeout: 15000,
  });
  assert.equal(rep.status, 1);
  assert.match(rep.stderr.trim(), /^mindsemantix: replay: \/nonexistent is not a folder/);
});
