"""A real (tiny) ScienceWorld collection: records are complete, labels come from replay, reruns resume."""

import pytest

import json
import subprocess
import sys

from hera_jax.labels import il_labels
from hera_jax.rollout.records import read_steps
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # runs a simulator or a notebook (the full run keeps it; -m "not slow" skips)


def _collect(out, *extra):
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "collect.py"), "--out", str(out), "--tasks",
         "find-non-living-thing", "--train-per-task", "2", "--dev-per-task", "1", "--test-per-task", "0",
         "--no-progress", *extra],
        capture_output=True, text=True, timeout=600,
    )


def test_collect_writes_complete_replayed_episodes_and_resumes(tmp_path):
    out = tmp_path / "ds"
    proc = _collect(out)
    assert proc.returncode == 0, proc.stderr
    rows, report = read_steps(out / "steps.jsonl", strict=True)
    episodes = {r["episode_id"] for r in rows}
    assert len(episodes) == 3 and report.problems == []
    assert {r["split"] for r in rows} == {"train", "dev"}
    assert all(r["actor"] == "cloud" and r["action"] == r["cloud_action"] for r in rows)
    assert all(r["device_action"] is not None for r in rows)
    il_labels([r["device_action"] for r in rows], [r["cloud_action"] for r in rows])  # no None anywhere
    for episode in episodes:
        steps = [r for r in rows if r["episode_id"] == episode]
        assert [r["step"] for r in steps] == list(range(len(steps)))
        assert len({r["success"] for r in steps}) == 1  # episode-level
        assert steps[-1]["done"] or len(steps) == 60
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["agents"]["cloud"]["kind"] == "stand-in" and manifest["agents"]["device"]["kind"] == "stand-in"
    assert manifest["command"].startswith("python experiments/collect.py")
    assert manifest["summary"]["num_episodes"] == 3

    lines_before = (out / "steps.jsonl").read_text()
    again = _collect(out)
    assert again.returncode == 0 and "0 new, 3 already there" in again.stdout
    assert (out / "steps.jsonl").read_text() == lines_before

    other = _collect(out, "--agents.device-seed", "5")
    assert other.returncode == 2 and "collected with other settings" in other.stderr
    # the one differing field is named with both values, not two whole settings dicts
    assert "agents.device.seed: on disk 0, now 5" in other.stderr and "model_sha256" not in other.stderr, other.stderr
    assert (out / "steps.jsonl").read_text() == lines_before
