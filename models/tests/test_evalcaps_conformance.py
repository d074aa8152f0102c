"""evalcaps reproduces BrainHub's published BLEU-1..4, METEOR, ROUGE-L and CIDEr for every method and subject in
test/fixtures/brainhub/published.csv (12 candidate files, 982 images each; one tokenizer call and one METEOR JVM for all)."""
import pytest

from mindsemantix.evalcaps import conformance

METRICS = ["BLEU1", "BLEU2", "BLEU3", "BLEU4", "METEOR", "ROUGE_L", "CIDEr"]


@pytest.fixture(scope="module")
def results():
    rows = conformance.published_rows()  # raises a clear error when test/fixtures/brainhub is missing
    assert len(rows) == 12 and {r["subject"] for r in rows} == {"1", "2", "5", "7"}
    return conformance.deviations(rows, ["BLEU", "METEOR", "ROUGE_L", "CIDEr"])


def test_every_published_row_within_tolerance(results):
    bad = [(r["method"], r["subject"], k, round(r["delta"][k], 6)) for r in results for k in METRICS
           if abs(r["delta"][k]) > conformance.TOLERANCE]
    assert not bad, f"deviation from published.csv above {conformance.TOLERANCE}: {bad}"


def test_every_published_row_agrees_to_the_printed_four_decimals(results):
    # published.csv has 4 decimals, so a faithful evaluator is within half a unit of the last digit (measured max
    # 0.000048); anything else (another tokenizer, METEOR build or image set) moves scores by 0.001 or more.
    bad = [(r["method"], r["subject"], k, round(r["delta"][k], 6)) for r in results for k in METRICS
           if abs(r["delta"][k]) > 0.00005 + 1e-9]
    assert not bad, bad
