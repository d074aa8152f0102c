"""PTB tokenization exactly as pycocoevalcap 1.2 does it (its Stanford CoreNLP 3.4.1 jar, `-preserveLines -lowerCase`,
then its punctuation list removed), batched into one JVM call, with a check that output lines stay aligned.

pycocoevalcap's own wrapper writes its temp file into site-packages and silently mis-aligns captions when one contains a
line separator other than "\\n" (the Java lexer also breaks lines at \\r, \\u2028, \\u2029, \\v, \\f, \\u0085); here those
become spaces, like "\\n" does there, and a line-count mismatch is an error rather than shifted captions.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from pycocoevalcap.tokenizer import ptbtokenizer as _ptb

from .errors import EvalCapsError

PUNCTUATIONS = frozenset(_ptb.PUNCTUATIONS)
JAR = os.path.join(os.path.dirname(os.path.abspath(_ptb.__file__)), _ptb.STANFORD_CORENLP_3_4_1_JAR)
_LINE_BREAKS = re.compile("[\n\r\u2028\u2029\u000b\u000c\u0085]")


def java_or_raise() -> str:
    java = shutil.which("java")
    if java is None:
        raise EvalCapsError("java was not found on PATH; caption metrics need a Java runtime (Debian: apt-get install default-jre-headless).")
    return java


def tokenize(sentences: list[str]) -> list[str]:
    """Tokenized, lower-cased, punctuation-free sentences, one per input, joined by single spaces."""
    if not sentences:
        return []
    java = java_or_raise()
    if not os.path.exists(JAR):
        raise EvalCapsError(f"the PTB tokenizer jar {JAR} is missing; reinstall pycocoevalcap==1.2 in .venv.")
    text = "\n".join(_LINE_BREAKS.sub(" ", s) for s in sentences)
    fd, path = tempfile.mkstemp(prefix="evalcaps-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        cmd = [java, "-cp", JAR, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", path]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.remove(path)
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EvalCapsError(f"the PTB tokenizer (java) failed with exit code {p.returncode}: {err[-1] if err else 'no message'}.")
    lines = p.stdout.decode("utf-8").split("\n")
    # The lexer ends the last line with or without "\n"; anything else means a caption split or merged lines.
    if len(lines) == len(sentences) + 1 and lines[-1] == "":
        lines.pop()
    if len(lines) != len(sentences):
        raise EvalCapsError(f"the PTB tokenizer returned {len(lines)} lines for {len(sentences)} captions; please report the captions file.")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines]
