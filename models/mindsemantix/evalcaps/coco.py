"""BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D through pycocoevalcap 1.2, on PTB-tokenized captions (as BrainHub does)."""
from __future__ import annotations

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from .errors import EvalCapsError
from .ptb import java_or_raise


class MeteorProcess:
    """One METEOR 1.5 JVM reused across calls: loading its paraphrase table costs ~10 s, scoring 1,000 captions ~1 s."""

    def __init__(self) -> None:
        java_or_raise()
        from pycocoevalcap.meteor.meteor import Meteor
        try:
            self._m = Meteor()
        except OSError as e:
            raise EvalCapsError(f"could not start METEOR (java -jar meteor-1.5.jar): {e}.") from None

    def score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
        try:
            mean, per = self._m.compute_score(gts, res)
        except (ValueError, BrokenPipeError) as e:
            err = self._m.meteor_p.stderr.read1(4000).decode("utf-8", "replace").strip() if self._m.meteor_p.poll() is not None else ""
            raise EvalCapsError(f"METEOR (java) stopped while scoring ({err.splitlines()[-1] if err else e}); is there 2 GB of memory free?") from None
        return float(mean), [float(s) for s in per]

    def close(self) -> None:
        p = self._m.meteor_p
        if p.poll() is None:
            p.stdin.close()
            p.kill()
            p.wait()
        # pycocoevalcap's __del__ would take the lock and kill again; both are harmless after this.


def bleu(gts, res) -> tuple[list[float], list[list[float]]]:
    score, per = Bleu(4).compute_score(gts, res, verbose=0)
    return [float(s) for s in score], [[float(x) for x in p] for p in per]


def rouge_l(gts, res) -> tuple[float, list[float]]:
    score, per = Rouge().compute_score(gts, res)
    return float(score), [float(x) for x in per]


def cider_d(gts, res) -> tuple[float, list[float]]:
    score, per = Cider().compute_score(gts, res)
    return float(score), [float(x) for x in per]
