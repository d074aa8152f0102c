// Test fixture: the models/ exporter's tiny random bundle, plus PyTorch's greedy captions for a few random trial
// responses (the parity oracle). Generated once per exporter version and reused across test files and runs.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../../../', import.meta.url).pathname;
const PY = join(ROOT, '.venv', 'bin', 'python');

/** Variants of the generation prompt the oracle decodes with: the bundle's own, and one without the suffix. */
export interface ParityCase {
  subject: string;
  voxels: number[];
  /** Generation overrides applied on both sides (empty = the bundle's settings). */
  generation: { suffix_ids?: number[] };
  ids: number[];
  text: string;
}

// The oracle runs the exporter and decodes with the PyTorch modules it exported (mindsemantix.caption.greedy_torch).
const ORACLE = `
import json, sys
from pathlib import Path
import numpy as np, torch
from mindsemantix.export import export_tiny
from mindsemantix.caption import greedy_torch
from tokenizers import Tokenizer
out = Path(sys.argv[1]); o = export_tiny(out, seed=int(sys.argv[2]))
m = o["manifest"]; tok = Tokenizer.from_file(str(out / "lm" / "tokenizer.json"))
rng = np.random.default_rng(7); cases = []
for sub, e in m["subjects"].items():
    v = rng.normal(size=(3, e["voxels"])).astype(np.float32)
    with torch.no_grad():
        bt = o["model"].encoder(sub, torch.from_numpy(v))
        sp = o["model"].qformer.lm_proj(o["model"].qformer.queries(bt))
    for override in ({}, {"suffix_ids": []}):
        ids = greedy_torch(o["lm"], o["lm"].embed_tokens, sp, {**m["generation"], **override})
        for row, seq in zip(v, ids):
            cases.append({"subject": sub, "voxels": row.tolist(), "generation": override, "ids": seq,
                          "text": tok.decode(seq, skip_special_tokens=True).strip()})
(out / "parity.json").write_text(json.dumps(cases))
`;

function exporterHash(): string {
  const h = createHash('sha256');
  const dir = join(ROOT, 'models', 'mindsemantix');
  for (const f of readdirSync(dir)
    .filter((f) => f.endsWith('.py'))
    .sort())
    h.update(f).update(readFileSync(join(dir, f)));
  h.update(ORACLE);
  return h.digest('hex').slice(0, 12);
}

/** Path of a tiny random bundle with `parity.json` beside its manifest (built on first use, ~20–40 s). */
export function tinyBundle(seed = 3): string {
  const dir = join(tmpdir(), `mindsemantix-tiny-${exporterHash()}-${seed}`);
  if (existsSync(join(dir, 'parity.json'))) return dir;
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const r = spawnSync(PY, ['-c', ORACLE, work, String(seed)], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: join(ROOT, 'models'), HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
  });
  if (r.status !== 0) throw new Error(`tiny bundle export failed:\n${r.stderr}`);
  try {
    renameSync(work, dir);
  } catch {
    rmSync(work, { recursive: true, force: true }); // another test process won the race; its bundle is identical
  }
  // Bundles of older exporter versions are never read again.
  for (const e of readdirSync(tmpdir())) {
    const old = join(tmpdir(), e);
    if (e.startsWith('mindsemantix-tiny-') && e.endsWith(`-${seed}`) && old !== dir)
      rmSync(old, { recursive: true, force: true });
  }
  return dir;
}

export function parityCases(dir: string): ParityCase[] {
  return JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8')) as ParityCase[];
}

/**
 * A copy of the tiny bundle in `into` with lm/decoder.int8.onnx and its step graph lm/decoder.int8.step.onnx added by
 * the same code as the bootstrap (mindsemantix.lm_quant: 8-bit weight blocks; mindsemantix.lm_fast: shared prefix
 * cache, top-k out; both listed with their sha256 in lm/lm-manifest.json).
 */
export function quantizedCopy(dir: string, into: string): string {
  const copy = join(into, 'bundle-int8');
  cpSync(dir, copy, { recursive: true });
  for (const mod of ['mindsemantix.lm_quant', 'mindsemantix.lm_fast']) {
    const r = spawnSync(PY, ['-m', mod, join(copy, 'lm')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${mod} on the tiny bundle's LM failed:\n${r.stderr}`);
  }
  return copy;
}
