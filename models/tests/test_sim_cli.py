"""`mindsemantix simulate` validates its options before delegating to Python, with one-sentence errors."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.path.join(ROOT, "bin", "mindsemantix.mjs")
BUILT = os.path.exists(os.path.join(ROOT, "dist", "src", "cli", "commands", "simulate.js"))
pytestmark = pytest.mark.skipif(not (BUILT and shutil.which("node")), reason="the TypeScript CLI is not built (npm run build)")


def cli(*args):
    return subprocess.run(["node", CLI, "simulate", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_bad_options_are_usage_errors(tmp_path):
    r = cli("--out", str(tmp_path / "x"), "--trials", "0")
    assert r.returncode == 2 and "--trials must be an integer" in r.stderr
    r = cli("--subject", "sim01")
    assert r.returncode == 2 and "--out is required" in r.stderr
    r = cli("--out", str(tmp_path / "x"), "--split", "all")
    assert r.returncode == 2 and "--split must be one of test, train, nsd" in r.stderr
    r = cli("--out", str(tmp_path / "x"), "--trials", "400", "--runs", "3")
    assert r.returncode == 2 and "--split nsd" in r.stderr
    assert not (tmp_path / "x").exists()


def test_help_names_every_option():
    r = subprocess.run(["node", CLI, "simulate", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0
    for opt in ("--out", "--subject", "--seed", "--trials", "--runs", "--split", "--grid"):
        assert opt in r.stdout
