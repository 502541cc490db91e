"""Measured numbers live in results files (benchmarks/RESULTS.md, experiments/results/*/README.md), not in the code:
no run time, date, confidence interval or issue number in src/ (docstrings, comments and --help texts)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

PATTERNS = {
    "a run time": re.compile(r"\b\d+(\.\d+)?\s?(min|minutes|hours)\b|\b\d+(\.\d+)?\s?s (on|per|for|wall)\b"
                             r"|\b\d+(\.\d+)?\s?(ms|s)(?!\w|\.\w)"),  # "~0.1 s", "0.1-0.6 s of", "47 s,"
    "a measured ratio": re.compile(r"~\d+(\.\d+)?x\b"),
    "a date": re.compile(r"\b20\d\d-\d\d-\d\d\b"),
    "an interval": re.compile(r"\[[-+]?0\.\d+,\s?[-+]?0\.\d+\]|\d %? \[\d+(\.\d+)?, \d+(\.\d+)?\]"),
    "an issue number": re.compile(r"\bissue \d+", re.IGNORECASE),
}


def test_no_measured_number_in_the_source():
    found = []
    for path in sorted((ROOT / "src" / "hera_jax").rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for what, pattern in PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()[:100]}")
    assert not found, "move these to a results file and point there:\n" + "\n".join(found)
