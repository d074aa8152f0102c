"""The live caption-choice rule `soft-references` as candidate_pool.py defines it: hand-computed cases, and the shared
fixture test/fixtures/rerank/soft-references.json that the TypeScript scorer (test/inference/referenceScorer.test.ts)
must reproduce, so offline figures (docs/experiments.md E12) and live decoding choose the same candidate.

Regenerate the fixture after changing the rule:
    PYTHONPATH=models .venv/bin/python models/tests/test_candidate_pool.py --write
"""
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from mindsemantix import candidate_pool as cp

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "test" / "fixtures" / "rerank" / "soft-references.json"
BUNDLE = ROOT / "models" / "bundles" / "default"


def _case_outputs(corpus, mu, centred, target, cands, pool, temperature, lm_weight):
    idx, w = cp.soft_reference_weights(target, mu, centred, pool, temperature)
    scores = cp.soft_reference_scores(corpus, [c["text"] for c in cands], target, mu, centred, pool, temperature)
    return {"refs": [int(i) for i in idx], "weights": [float(x) for x in w], "scores": scores,
            "choice": cp.choose(scores, [c["logprobs"] for c in cands], lm_weight)}


def build_fixture() -> dict:
    """A 40-caption bank from the default bundle (captions both tokenizers split alike: letters and spaces, a final
    period), embeddings randomly projected to 8 dimensions; cases drawn until they show what the rule must do: the
    log-prob term changes a choice, centring changes the nearest caption, and no choice is a near tie."""
    allcaps = json.loads((BUNDLE / "baseline_captions.json").read_text())
    emb = np.load(BUNDLE / "baseline_embeddings.npy")
    keep = [i for i, c in enumerate(allcaps) if re.fullmatch(r"[A-Za-z ]+\.?", c)]
    rs = np.random.RandomState(0)
    proj = rs.randn(emb.shape[1], 8)
    bank_ids, cand_ids = keep[:40], keep[40:400]
    bank = cp._unit(emb[bank_ids] @ proj).astype(np.float32)
    captions = [allcaps[i] for i in bank_ids]
    corpus = cp.CorpusCider(captions)
    mu, centred = cp.centred_bank(bank)
    pool, temperature, lm_weight = 10, cp.SOFT_TEMPERATURE, cp.SOFT_LM_WEIGHT
    cases, lm_matters, centring_matters = [], False, False
    for _ in range(1000):
        if len(cases) >= 6 and lm_matters and centring_matters:
            break
        j = rs.randint(len(captions))
        target = (1.7 * cp._unit(bank[j] + 0.6 * rs.randn(8))).astype(np.float32)
        texts = [allcaps[cand_ids[k]] for k in rs.choice(len(cand_ids), 5, replace=False)]
        if len(cases) % 2:
            texts.append(captions[j])  # a candidate among the references
        if not cases:
            texts.append("")
        cands = [{"text": t, "logprobs": [round(float(x), 4) for x in
                                          np.minimum(-0.01, rs.uniform(-2.5, -0.2) + 0.3 * rs.randn(len(t.split())))]}
                 if t else {"text": t, "logprobs": []} for t in texts]
        out = _case_outputs(corpus, mu, centred, target, cands, pool, temperature, lm_weight)
        total = sorted(s + lm_weight * cp.mean_logprob(c["logprobs"]) for s, c in zip(out["scores"], cands))
        if total[-1] - total[-2] < 1e-3:
            continue
        differs = out["choice"] != int(np.argmax(out["scores"]))
        raw_first = int(np.argmax(bank @ target))
        adds = (differs and not lm_matters) or (raw_first != out["refs"][0] and not centring_matters)
        if len(cases) >= 4 and not (lm_matters and centring_matters) and not adds:
            continue  # keep the last places for cases that show what is still missing
        lm_matters |= differs
        centring_matters |= raw_first != out["refs"][0]
        cases.append({"target": [float(x) for x in target], "candidates": cands, **out})
    else:
        raise RuntimeError("no fixture cases show both the log-prob term and centring at work; change the seed")
    return {
        "about": "The soft-references caption choice (docs/experiments.md E12) on a small bank: Python "
                 "(models/tests/test_candidate_pool.py, which regenerates this file with --write) and TypeScript "
                 "(test/inference/referenceScorer.test.ts) must give these references, weights, scores and choices. "
                 "Embeddings are float32 values.",
        "pool": pool, "temperature": temperature, "lm_weight": lm_weight,
        "bank": {"captions": captions, "embeddings": [[float(x) for x in row] for row in bank]},
        "cases": cases,
    }


def test_fixture_matches_the_rule():
    fx = json.loads(FIX.read_text())
    bank = np.array(fx["bank"]["embeddings"], dtype=np.float32)
    corpus = cp.CorpusCider(fx["bank"]["captions"])
    mu, centred = cp.centred_bank(bank)
    for c in fx["cases"]:
        out = _case_outputs(corpus, mu, centred, np.array(c["target"], dtype=np.float32), c["candidates"], fx["pool"],
                            fx["temperature"], fx["lm_weight"])
        assert out["refs"] == c["refs"] and out["choice"] == c["choice"]
        np.testing.assert_allclose(out["weights"], c["weights"], rtol=1e-9)
        np.testing.assert_allclose(out["scores"], c["scores"], rtol=1e-9)


def test_fixture_cases_show_what_the_rule_must_do():
    fx = json.loads(FIX.read_text())
    bank = np.array(fx["bank"]["embeddings"], dtype=np.float32)
    cases = fx["cases"]
    assert any(c["choice"] != int(np.argmax(c["scores"])) for c in cases), "the log-prob term changes some choice"
    assert any(int(np.argmax(bank @ np.array(c["target"], dtype=np.float32))) != c["refs"][0] for c in cases), \
        "centring changes some nearest caption"
    assert all(len(c["refs"]) == fx["pool"] < len(bank) for c in cases)


def test_hand_computed_soft_references():
    # Four captions with no word in common, embeddings on the axes (mean 0, so centring changes nothing): a candidate
    # equal to a caption has CIDEr-D 10 against it and 0 against the others.
    captions = ["red ball on beach", "green tree in snow", "blue car by lake", "small house under wall"]
    bank = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    corpus = cp.CorpusCider(captions)
    mu, centred = cp.centred_bank(bank)
    idx, w = cp.soft_reference_weights([2.0, 0.0], mu, centred, pool=2, temperature=0.5)
    assert list(idx) == [0, 1]  # captions 1 and 3 tie at similarity 0: bank order
    np.testing.assert_allclose(w, [1, math.exp(-2)])
    s = cp.soft_reference_scores(corpus, [captions[0], captions[1], captions[2], " "], [2.0, 0.0], mu, centred, 2, 0.5)
    np.testing.assert_allclose(s[:3], [10 / (1 + math.exp(-2)), 10 * math.exp(-2) / (1 + math.exp(-2)), 0], atol=1e-12)
    assert s[3] == -1
    # 8.808 - 0.1 x 2 = 8.608 against 1.192 - 0: the score wins; with a weight of 10 the log-probs do.
    assert cp.choose(s[:2], [[-2.0], [0.0]], 0.1) == 0
    assert cp.choose(s[:2], [[-2.0], [0.0]], 10) == 1
    assert cp.choose([1.0, 1.0], [[], []], 0.1) == 0  # a tie keeps the first


if __name__ == "__main__":
    if "--write" in sys.argv:
        FIX.parent.mkdir(parents=True, exist_ok=True)
        FIX.write_text(json.dumps(build_fixture(), indent=1) + "\n")
        print(f"wrote {FIX}")
