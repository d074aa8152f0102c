"""Greedy captions of the fp32 LM decoder against the quantized one, on held-out test responses of the sim data.

  python -m mindsemantix.quant_check [--bundle models/bundles/default] [--data data/sim] [--n 102]
                                     [--quantized lm/decoder.int8.onnx] [--out models/runs/quant-check.json]

Takes the first n/k test stimuli (mean of repeats) of each of the bundle's k subjects, captions them through the bundle's
encoder and Q-Former and then greedily with each LM graph (onnxruntime, the algorithm of mindsemantix.caption), and
reports the share of identical captions, where they diverge, and CIDEr / BLEU-4 of both against the references. Re-run
it whenever the bundle's weights change: the agreement depends on how confident the trained model is."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .util import log

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "default"


def test_responses(data_root: Path, subjects: list[str], n: int) -> list[tuple[str, str, np.ndarray, list[str]]]:
    """(subject, stimulus id, mean response [V], reference captions) for the first ceil(n/k) test stimuli per subject."""
    from .data import load_sim
    corpus = load_sim(Path(data_root), subjects=subjects)
    per = -(-n // len(subjects))
    out = []
    for s in subjects:
        if s not in corpus.subjects:
            raise FileNotFoundError(f"{data_root} has no responses of subject {s}, which the bundle decodes; "
                                    "pass --data with the dataset the bundle was trained on.")
        d = corpus.subjects[s]
        for j in range(min(per, len(d.test_x))):
            i = int(d.test_stim[j])
            out.append((s, corpus.stimuli[i], d.test_x[j], corpus.captions[i]))
    return out


def greedy_captions(runner, items, batch: int) -> list[list[int]]:
    ids: list[list[int]] = []
    for s in dict.fromkeys(it[0] for it in items):
        rows = [it for it in items if it[0] == s]
        for i0 in range(0, len(rows), batch):
            x = np.stack([r[2] for r in rows[i0:i0 + batch]]).astype(np.float32)
            sp, _ = runner.qform(runner.brain_tokens(s, x))
            ids.extend(runner.greedy(sp))
    return ids


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def check(bundle: Path, data_root: Path, n: int, quantized: str, batch: int = 6, threads: int = 2) -> dict:
    from tokenizers import Tokenizer
    from .caption import BundleRunner
    from .evalcaps import score
    bundle = Path(bundle)
    if not (bundle / quantized).exists():
        raise FileNotFoundError(f"{bundle / quantized} is missing; run `python -m mindsemantix.bootstrap` to generate it.")
    m = json.loads((bundle / "manifest.json").read_text())
    items = test_responses(data_root, list(m["subjects"]), n)
    tok = Tokenizer.from_file(str(bundle / "lm" / "tokenizer.json"))
    ids, secs = {}, {}
    for name, graph in (("fp32", "lm/decoder.onnx"), ("quantized", quantized)):
        t0 = time.time()
        ids[name] = greedy_captions(BundleRunner(bundle, decoder=graph, threads=threads), items, batch)
        secs[name] = round(time.time() - t0, 1)
        log(f"quant_check: {name} ({graph}): {len(items)} captions in {secs[name]} s")
    keys = [f"{s}:{sid}" for s, sid, _, _ in items]
    text = {k: {key: tok.decode(seq, skip_special_tokens=True).strip() for key, seq in zip(keys, v)} for k, v in ids.items()}
    refs = {key: it[3] for key, it in zip(keys, items)}
    scores = {k: score(refs, text[k], metrics=("CIDEr", "BLEU4")) for k in text}
    same = [a == b for a, b in zip(ids["fp32"], ids["quantized"])]
    prefix = [common_prefix(a, b) / max(len(a), 1) for a, b in zip(ids["fp32"], ids["quantized"])]
    lm_manifest = json.loads((bundle / "lm" / "lm-manifest.json").read_text())
    return {
        "bundle": str(bundle), "bundle_created": m.get("created"), "quantized": quantized,
        "quantization": lm_manifest.get("quantization"), "data": str(data_root), "captions": len(items),
        "subjects": list(m["subjects"]),
        "identical": int(sum(same)), "identical_pct": round(100 * float(np.mean(same)), 1),
        "fp32_tokens_kept_before_divergence_pct": round(100 * float(np.mean(prefix)), 1),
        "mean_tokens": {k: round(float(np.mean([len(s) for s in v])), 2) for k, v in ids.items()},
        "scores": {k: {mk: round(mv, 4) for mk, mv in v.items()} for k, v in scores.items()},
        "seconds": secs,
        "differing": [{"id": k, "fp32": text["fp32"][k], "quantized": text["quantized"][k]}
                      for k, s in zip(keys, same) if not s][:12],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindsemantix.quant_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    ap.add_argument("--data", default="data/sim")
    ap.add_argument("--n", type=int, default=102, help="test responses in all, split evenly over the bundle's subjects")
    ap.add_argument("--quantized", default="lm/decoder.int8.onnx", help="the quantized graph, relative to the bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the report as JSON here")
    a = ap.parse_args(argv)
    try:
        r = check(Path(a.bundle), Path(a.data), a.n, a.quantized, threads=a.threads)
    except FileNotFoundError as e:
        sys.stderr.write(f"[quant_check] {e}\n")
        return 1
    text = json.dumps(r, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
