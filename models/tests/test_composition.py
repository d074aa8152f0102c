"""The compositional metric: the simulator's own reference captions score right on their own scene and low on another
scene; the Python and TypeScript scorers agree (shared fixtures under test/fixtures/composition); scene facts reach
stimuli.tsv and evaluate.

Regenerate the sample fixture after changing the scorer or world.py's words:
    PYTHONPATH=models .venv/bin/python models/tests/test_composition.py --write
"""
import json
import sys
from pathlib import Path

import numpy as np

from mindsemantix import composition as C
from mindsemantix.sim import world as w
from mindsemantix.sim.vocabulary import ts_module

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "test" / "fixtures" / "composition"
SAMPLE_SCENES = list(range(0, 20)) + list(range(w.N_TEST, w.N_TEST + 20))


def _other(i: int) -> int:
    """A scene with another main object, colour and background than scene i (the wrong-scene control)."""
    s = w.scene(i)
    j = i + 1
    while (w.scene(j).primary.category == s.primary.category or w.scene(j).primary.colour == s.primary.colour
           or w.scene(j).background == s.background):
        j += 1
    return j


def sample_cases() -> list[dict]:
    """Every reference caption of SAMPLE_SCENES, scored on its own scene and on another one, with Python's verdicts."""
    out = []
    for i in SAMPLE_SCENES:
        for cap in w.scene(i).captions:
            for j in (i, _other(i)):
                f = C.scene_facts(w.scene(j))
                out.append({"caption": cap, "facts": f, "expect": C.check(cap, f)})
    return out


def test_typescript_vocabulary_is_generated_from_the_world():
    ts = (ROOT / "src" / "metrics" / "simVocabulary.ts").read_text(encoding="utf-8")
    assert ts == ts_module(), "src/metrics/simVocabulary.ts is stale: run `python -m mindsemantix.sim.vocabulary --write-ts src/metrics/simVocabulary.ts`"


def test_hand_judged_cases():
    fx = json.loads((FIX / "cases.json").read_text())
    for c in fx["cases"]:
        assert C.check(c["caption"], c["facts"]) == c["expect"], c
    r = fx["rates"]
    assert C.rates(r["captions"], r["facts"], r["novel"], r["training_captions"]) == r["expect"]


def test_sample_fixture_matches_the_scorer_and_the_world():
    assert json.loads((FIX / "sample.json").read_text())["cases"] == sample_cases()


def test_reference_captions_are_right_on_their_own_scene():
    n, best, tot = 0, [], {f: 0 for f in C.FIELDS}
    for i in range(0, w.N_SCENES, 4):
        s = w.scene(i)
        f = C.scene_facts(s)
        ex = False
        for cap in s.captions:
            r = C.check(cap, f)
            p = C.parse(cap)
            main = next(o for o in p.objects if o.category == f["object"])
            # whatever a reference says about the main object and the background is right
            assert main.colour in (None, f["colour"]) and main.count == f["count"], (cap, f)
            assert p.backgrounds <= {f["background"]}, (cap, f)
            for k in C.FIELDS:
                tot[k] += r[k]
            n += 1
            ex = ex or r["exact"]
        best.append(ex)
    assert tot["object"] == n and tot["count"] == n
    assert all(best)                      # every scene has a reference that names all four
    # references leave colour or background out sometimes (like COCO), never say them wrong (above)
    assert 0.65 < tot["colour"] / n < 0.8 and 0.7 < tot["background"] / n < 0.9


def test_reference_captions_score_low_on_another_scene():
    caps = {}
    facts = {}
    for i in range(0, 3000, 3):
        for k, cap in enumerate(w.scene(i).captions):
            caps[f"{i}/{k}"] = cap
            facts[f"{i}/{k}"] = C.scene_facts(w.scene(_other(i)))
    r = C.rates(caps, facts)
    assert r["exact"] == 0 and r["colour"] < 0.1 and r["background"] == 0
    assert r["object"] < 0.3                          # only a secondary object can share the other scene's category


def test_copied_and_novel_rates():
    caps = {"a": "A red ball.", "b": "a RED ball", "c": "a green ball on the grass"}
    facts = {k: {"object": "ball", "colour": "green", "count": 1, "background": "field"} for k in caps}
    r = C.rates(caps, facts, novel={"a": True, "b": False, "c": True}, training_captions=["a red ball"])
    assert r["copied"] == 2 / 3 and r["novel_trials"] == 2 and r["novel_exact"] == 0.5
    assert "copied" not in C.rates(caps, facts) and C.rates({}, {}) == {}


def test_stimuli_tsv_carries_the_scene_facts(tmp_path):
    from mindsemantix.sim import output
    (tmp_path / "stimuli.tsv").write_text("stimulus_id\tsplit\tcaptions\nscene-000005\ttest\t[\"old\"]\n", encoding="utf-8")
    output.write_stimuli_tsv(str(tmp_path), [7, 400])
    lines = (tmp_path / "stimuli.tsv").read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    assert head == output.STIMULI_COLUMNS and head[:3] == ["stimulus_id", "split", "captions"]
    rows = {r["stimulus_id"]: r for r in (dict(zip(head, ln.split("\t"))) for ln in lines[1:])}
    assert rows["scene-000005"]["captions"] == '["old"]'      # an earlier row is kept, and gains the facts
    for i in (5, 7, 400):
        s, r = w.scene(i), rows[w.scene_id(i)]
        assert {k: r[k] for k in ("object", "colour", "background")} == {"object": s.primary.category, "colour": s.primary.colour, "background": s.background}
        assert int(r["count"]) == s.primary.count and json.loads(r["objects"])[0]["category"] == s.primary.category
        assert r["relation"] == (s.relation or "n/a")


def test_training_data_loads_the_scene_facts(tmp_path):
    from mindsemantix.data import load_sim
    from mindsemantix.fixtures import write_sim
    root = write_sim(tmp_path, n_stim=8, n_test=2)
    assert "scene_facts" not in load_sim(root).meta                 # data without the columns: no facts
    lines = (root / "stimuli.tsv").read_text().splitlines()
    extra = ["\tobject\tcolour\tcount\tbackground"] + [f"\tball\tred\t{1 + k % 3}\tbeach" for k in range(len(lines) - 1)]
    (root / "stimuli.tsv").write_text("".join(ln + e + "\n" for ln, e in zip(lines, extra)))
    facts = load_sim(root).meta["scene_facts"]
    assert facts["s002"] == {"object": "ball", "colour": "red", "count": 3, "background": "beach"} and len(facts) == 8


def test_evaluate_reports_the_rates_for_a_simulator_corpus():
    from mindsemantix.data import Corpus, SubjectData
    from mindsemantix.evaluate import CompositionScorer
    ids = [w.scene_id(i) for i in (0, 1, 2, 300, 301)]
    caps = [list(w.scene(w.scene_index(s)).captions) for s in ids]
    corpus = Corpus(ids, caps, ["test", "test", "test", "train", "train"], meta={"source": "sim", "root": "/nonexistent"})
    corpus.subjects["sim01"] = SubjectData("sim01", 3, np.zeros((2, 3), np.float32), np.array([3, 4]), np.zeros((3, 3), np.float32),
                                           np.array([0, 1, 2]), np.array([3, 3, 3]))
    scorer = CompositionScorer(corpus)
    best = {}
    for i in range(3):
        sid = ids[i]
        best[f"sim01:{sid}"] = next(c for c in caps[i] if C.check(c, C.scene_facts(w.scene(i)))["exact"])
    out = scorer({"CIDEr": 1.0}, best)
    assert out["CIDEr"] == 1.0 and out["composition"]["exact"] == 1 and out["composition"]["novel_exact"] == 1
    assert out["composition"]["copied"] == 0
    retrieved = {f"sim01:{ids[i]}": caps[3][0] for i in range(3)}   # a training caption for every test stimulus
    r = scorer({}, retrieved)["composition"]
    assert r["copied"] == 1 and r["novel_exact"] == 0
    # a corpus that is not the simulator's world gets no block
    nsd = Corpus(["s000"], [["a"]], ["test"], meta={"source": "sim"})
    assert CompositionScorer(nsd)({"CIDEr": 0.5}, {"sim01:s000": "a"}) == {"CIDEr": 0.5}


if __name__ == "__main__" and "--write" in sys.argv:
    about = ("Reference captions of 40 simulator scenes (20 test, 20 train), each scored on its own scene and on another "
             "one by the Python scorer; the TypeScript scorer must agree. Written by models/tests/test_composition.py --write.")
    rows = ",\n".join("  " + json.dumps(c) for c in sample_cases())   # one case a line: readable diffs
    (FIX / "sample.json").write_text(f'{{"about": {json.dumps(about)},\n "cases": [\n{rows}\n]}}\n', encoding="utf-8")
