// Client strings that reach logs and recordings: control characters escaped in log lines (one event, one line, no
// terminal escapes), and a sender's image path kept as stim_file only when it stays inside the dataset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { oneLine } from '../../src/server/log.js';
import { safeStimulusPath } from '../../src/server/recording.js';

test('log lines: control characters from clients are escaped, one event stays one line', () => {
  assert.equal(
    oneLine('client "evil\nFAKE 2026 info [ingest] ok\u001b[31m\u202e" connected'),
    'client "evil\\nFAKE 2026 info [ingest] ok\\u001b[31m\\u202e" connected',
  );
});

test("the recording keeps a sender's image path only when it stays inside the dataset", () => {
  assert.equal(safeStimulusPath('stimuli/a.png'), 'stimuli/a.png');
  assert.equal(safeStimulusPath('/etc/passwd'), undefined);
  assert.equal(safeStimulusPath('../../home/u/.ssh/id_rsa'), undefined);
  assert.equal(safeStimulusPath('stimuli/../../x.png'), undefined);
  assert.equal(safeStimulusPath('C:\\\\Users\\\\x.png'), undefined);
});

test('an event whose image path leads outside the dataset is recorded with stim_file n/a', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { startServer } = await import('../../src/server/index.js');
  const { runPaths } = await import('../../src/server/recording.js');
  const { captureLog, rawClient, runInfo, tempDir, waitFor } = await import('./helpers.js');
  const rec = tempDir('stimpath');
  const srv = await startServer({ port: 0, recordDir: rec, log: captureLog().log });
  t.after(() => srv.close());
  const info = runInfo({ subject: 'p01' });
  const c = await rawClient(srv.url, { type: 'hello', v: 1, client: 'raw' });
  c.ws.send(JSON.stringify({ type: 'run-start', ...info }));
  const paths = ['stimuli/ok.png', '/home/u/.ssh/id_rsa.png', '../../../../etc/x.png'];
  paths.forEach((image, trial) =>
    c.ws.send(
      JSON.stringify({
        type: 'event',
        session: info.session,
        run: info.run,
        trial,
        onset: trial,
        duration: 1,
        stimulusId: `s${trial}`,
        image,
      }),
    ),
  );
  await waitFor(() => c.acks().some((a) => a.eventsNext === 3), 3000, 'events acked');
  c.ws.close();
  await srv.close();
  const rows = readFileSync(runPaths(rec, info.subject, info.session, info.run).events, 'utf8')
    .trim()
    .split('\n')
    .slice(1);
  assert.deepEqual(
    rows.map((r) => r.split('\t')[5]),
    ['stimuli/ok.png', 'n/a', 'n/a'],
  );
});
