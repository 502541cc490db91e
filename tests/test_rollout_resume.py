"""`kill -9` during experiments/collect.py, then the same command again: finished episodes are kept, the partial
one is redone, nothing is duplicated, and the result equals an uninterrupted collection (records are reproducible
because an episode's records do not depend on what its simulator ran before)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hera_jax.rollout.records import read_steps

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--tasks", "find-animal", "power-component", "--train-per-task", "2", "--dev-per-task", "0",
        "--test-per-task", "1", "--no-progress", "--max-steps", "20"]
NUM_EPISODES = 6


def collect(out: Path, args: list[str] = ARGS) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / "collect.py"), "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_9_once_an_episode_is_on_disk(proc: subprocess.Popen, steps: Path) -> None:
    deadline = time.monotonic() + 300
    while not (steps.exists() and steps.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return output


def episodes(path: Path) -> dict[str, list[dict]]:
    rows, _ = read_steps(path)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["episode_id"], []).append(row)
    return by_id


def add_what_a_kill_mid_write_leaves(path: Path, reference: dict[str, list[dict]]) -> str:
    """Append the first lines of a pending episode and a cut-off line; returns that episode's id."""
    kept = episodes(path)
    pending = next(e for e, rows in reference.items() if e not in kept and len(rows) >= 3)
    lines = [json.dumps(r) + "\n" for r in reference[pending]]
    with open(path, "a") as f:
        f.write(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])
    return pending


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    finish(collect(out))
    return out / "steps.jsonl"


def test_kill_9_then_rerun_keeps_finished_redoes_partial_and_duplicates_nothing(tmp_path, reference):
    out = tmp_path / "killed"
    steps = out / "steps.jsonl"
    kill_9_once_an_episode_is_on_disk(collect(out), steps)  # mid-collection: more episodes are pending
    kept = episodes(steps)
    assert 1 <= len(kept) < NUM_EPISODES

    reference_episodes = episodes(reference)
    pending = add_what_a_kill_mid_write_leaves(steps, reference_episodes)
    before_rerun = steps.read_bytes()
    _, report = read_steps(steps)
    assert any("truncated last line" in p for p in report.problems)
    assert any(f"episode {pending} has 2 of" in p for p in report.problems)

    output = finish(collect(out))
    assert f"{NUM_EPISODES - len(kept)} new, {len(kept)} already there" in output
    assert steps.read_bytes().startswith(before_rerun)  # append-only: nothing already written was rewritten
    resumed = episodes(steps)
    assert set(resumed) == set(reference_episodes) and len(resumed) == NUM_EPISODES
    for episode_id, rows in resumed.items():
        assert [r["step"] for r in rows] == list(range(len(rows)))  # no duplicated step
        assert rows == reference_episodes[episode_id]  # same records as the uninterrupted run
    for episode_id, rows in kept.items():
        assert resumed[episode_id] == rows  # finished episodes were kept, not redone
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["num_episodes"] == NUM_EPISODES


# --- the same with the real scoring device (Gemma-3-270M through llama.cpp) ---------------------------------------

SCORE_ARGS = ["--env", "textworld_express:twc", "--tasks", "twc-easy", "--train-per-task", "2", "--dev-per-task",
              "0", "--test-per-task", "1", "--max-steps", "4", "--no-progress", "--engine.batch-size", "1",
              "--engine.workers", "1", "--agents.device", "gguf-score"]


def without_latency(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "device_latency_s"} for r in rows]


def test_scoring_device_collection_killed_and_rerun_equals_a_straight_one(tmp_path):
    straight = tmp_path / "straight"
    finish(collect(straight, SCORE_ARGS))
    reference = episodes(straight / "steps.jsonl")
    assert len(reference) == 3 and all(r["device_p_top"] is not None for rows in reference.values() for r in rows)
    memo = straight / "features" / "device_decisions_gemma-3-270m-q4_k_m.jsonl"
    assert memo.read_text().count("\n") >= len({r["state_key"] for rows in reference.values() for r in rows})

    out = tmp_path / "killed"
    steps = out / "steps.jsonl"
    # decisions of the episode in flight may already be in the memo when the kill lands
    kill_9_once_an_episode_is_on_disk(collect(out, SCORE_ARGS), steps)
    kept = episodes(steps)
    assert 1 <= len(kept) < 3
    finish(collect(out, SCORE_ARGS))
    resumed = episodes(steps)
    assert set(resumed) == set(reference)
    for episode_id, rows in resumed.items():  # the same actions and confidences; only fresh latencies differ
        assert without_latency(rows) == without_latency(reference[episode_id]), episode_id
    for episode_id, rows in kept.items():
        assert resumed[episode_id] == rows
