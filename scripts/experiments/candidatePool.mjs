#!/usr/bin/env node
// Experiment tool (docs/experiments.md E10): for every single trial of recorded response files, the LM's candidate
// captions as live reranking draws them (greedy + N-1 seeded samples), with the read-out's and the ridge's predicted
// caption embeddings, one JSON line per trial. `python -m mindsemantix.candidate_pool` scores ways of choosing among them.
// Usage: node scripts/experiments/candidatePool.mjs BUNDLE OUT.jsonl N SUBJECT RESPONSES_DIR... (resumes an OUT it finds)
import { appendFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../../dist/src/', import.meta.url));
const { BrainDecoder } = await import(join(dist, 'inference/decoder.js'));
const { RidgeRetrieval } = await import(join(dist, 'inference/baseline.js'));
const { readNpy } = await import(join(dist, 'inference/npy.js'));

const [bundleDir, out, n, subject, ...roots] = process.argv.slice(2);
if (!roots.length) {
  process.stderr.write(
    'usage: node scripts/experiments/candidatePool.mjs BUNDLE OUT.jsonl N SUBJECT RESPONSES_DIR...\n',
  );
  process.exit(2);
}
const dec = await BrainDecoder.load(bundleDir, { threads: 2 });
const ridge = await RidgeRetrieval.load(dec.bundle, dec.sessions);
const done = new Set(
  existsSync(out)
    ? readFileSync(out, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l).key)
    : [],
);
const setting = { candidates: Number(n), strategy: 'sample', temperature: 0.7 };
const files = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
let count = 0;
const t0 = Date.now();
for (const root of roots) {
  for (const tsv of files(root)
    .filter((f) => f.endsWith('_responses.tsv'))
    .sort()) {
    const rows = readFileSync(tsv, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
    const head = rows.shift();
    const { shape, data } = readNpy(tsv.replace(/\.tsv$/, '.npy'));
    const V = shape[1];
    for (const [i, row] of rows.entries()) {
      const key = `${tsv}#${row[head.indexOf('trial')]}`;
      if (done.has(key)) continue;
      const voxels = data.slice(i * V, (i + 1) * V);
      const readout = (await dec.caption(subject, voxels, { maxNewTokens: 1 })).captionEmbedding;
      const cands = await dec.captionCandidates(subject, voxels, setting, {});
      const rec = {
        key,
        stimulusId: row[head.indexOf('stimulus_id')],
        presentation: Number(row[head.indexOf('presentation')]),
        cands: cands.map((g) => ({ text: dec.tokenizer.decode(g.tokens), lp: g.logprobs })),
        readout: Array.from(readout),
        ridge: ridge ? Array.from(await ridge.embedding(subject, voxels)) : null,
      };
      appendFileSync(out, JSON.stringify(rec) + '\n');
      if (++count % 20 === 0)
        process.stderr.write(`${count} trials, ${((Date.now() - t0) / count).toFixed(0)} ms per trial\n`);
    }
  }
}
process.stderr.write(`done: ${count} trials\n`);
await ridge?.release();
await dec.release();
