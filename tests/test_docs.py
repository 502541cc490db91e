"""The documentation builds: `mkdocs build --strict` fails on a broken link, a missing page or an API symbol that
no longer exists; the README stays short and keeps its two set-up commands."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_docs_build_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_readme_is_short_and_keeps_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert 'pip install -e ".[rollouts]" && python experiments/il.py' in readme
    test_command = 'pip install -e ".[all]" && python -m pytest -q -n 2'
    assert test_command in readme
    assert test_command in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command
