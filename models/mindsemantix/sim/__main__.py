"""python -m mindsemantix.sim --out DIR [--subject ID] [--seed N] [--trials N] [--runs N] [--split test|train|nsd] [--grid default|nsd]

Writes one simulated BIDS session (see docs/simulator.md). `mindsemantix simulate` delegates here."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindsemantix.sim", description="Simulate a visual fMRI session (BIDS).")
    p.add_argument("--out", required=True)
    p.add_argument("--subject", default="sim01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=62, help="image trials per run")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--split", choices=["test", "train", "nsd"], default="test")
    p.add_argument("--grid", choices=["default", "nsd"], default="default")
    a = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9]+", a.subject):
        p.error("--subject must be letters and digits (a BIDS label), e.g. sim01")
    if a.trials < 1 or a.runs < 1:
        p.error("--trials and --runs must be at least 1")
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[simulate {time.time() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    from .session import simulate_session  # heavy imports after argument checks

    try:
        info = simulate_session(a.out, a.subject, a.seed, a.trials, a.runs, a.split, a.grid, log)
    except ValueError as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    log(f"done: {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
