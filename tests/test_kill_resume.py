"""`kill -9` during experiments/rl_iter.py and experiments/evaluate.py, then the same command again (issue 11): the
rerun completes, keeps what was on disk byte for byte (append-only), redoes the partial episode, duplicates
nothing, and ends with the records and results of an uninterrupted run with the same flags (records are
reproducible: simulators whose episodes do not depend on what they ran before, seeded agents). experiments/collect.py's counterpart is
tests/test_rollout_resume.py.

The runs are tiny TextWorldExpress (twc) runs with the stand-in agents; `--engine.batch-size 1` makes episodes
finish one at a time, so a kill once an episode is on disk lands with more pending. rl_iter.py is also killed
between saving an iteration's checkpoint and finishing that iteration. Each command runs in its own session and the
kill goes to the whole process group (simulator child processes included), as a crash would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.rollout.records import read_steps
from tests.test_rollout_resume import add_what_a_kill_mid_write_leaves, episodes, finish

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TWC = "textworld_express:twc"
COMMON = ["--env", TWC, "--tasks", "twc-easy", "--max-steps", "6", "--no-progress", "--engine.batch-size", "1"]
RL_ARGS = [*COMMON, "--iters", "2", "--train-variations", "3", "--rollouts-per-task", "2", "--eval-variations", "1",
           "--il-train.hidden-sizes", "16", "--il-train.max-epochs", "4", "--il-train.patience", "4",
           "--train.epochs", "3"]
EVAL_ARGS = [*COMMON, "--dev-per-task", "1", "--test-per-task", "2", "--unseen-per-task", "1",
             "--thresholds", "0.3", "0.7", "--baselines", "random", "--random-rates", "0.5"]


def start(script: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_9_once_on_disk(proc: subprocess.Popen, path: Path) -> None:
    """SIGKILL the command once `path` exists (a file: once it holds a whole line, i.e. an episode's first step)."""
    deadline = time.monotonic() + 300
    while not (path.is_dir() or path.exists() and path.read_text().count("\n") >= 1):
        assert proc.poll() is None, f"the command ended before writing {path}:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {path} after 300 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its simulators, like a crash
    proc.communicate()


def _ends_an_episode(line: bytes) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False
    return row["step"] == row["episode_steps"] - 1


def where(problem: str) -> str:
    """The file:line a `read_steps` problem is about."""
    return problem.split(": ", 1)[0]


def assert_resumed_like_reference(path: Path, before_rerun: bytes, problems_before: list[str],
                                  kept: dict[str, list[dict]], reference: dict[str, list[dict]]) -> None:
    # every complete episode already written stays as it was; only the cut-off episode after them was removed
    lines = before_rerun.splitlines(keepends=True)
    ends = [i for i, line in enumerate(lines) if line.endswith(b"\n") and _ends_an_episode(line)]
    assert path.read_bytes().startswith(b"".join(lines[: ends[-1] + 1]) if ends else b"")
    _, report = read_steps(path)
    assert report.problems == []  # the rerun appended only whole, unique episodes after them
    resumed = episodes(path)
    assert list(resumed) == list(reference)  # every episode once, in the same order
    for episode_id, rows in resumed.items():
        assert rows == reference[episode_id], episode_id  # the records of the uninterrupted run
    for episode_id, rows in kept.items():
        assert resumed[episode_id] == rows  # finished episodes were kept, not redone


# --- experiments/rl_iter.py ---------------------------------------------------------------------------------------

def rl_iter(out: Path) -> subprocess.Popen:
    return start("rl_iter.py", [*RL_ARGS, "--out", str(out)])


def comparable_metrics(run_dir: Path, iteration: int) -> dict:
    """An iteration's metrics without what depends on where a run was interrupted (timings, embedding-cache
    misses: a killed process never flushed the states it embedded, so the rerun embeds them again)."""
    metrics = json.loads((run_dir / f"iter_{iteration:03d}" / "metrics.json").read_text())
    metrics.pop("timings_s")
    metrics.get("rollouts", {}).pop("newly_embedded_states", None)
    return metrics


def jsonl_files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("iter_*/*.jsonl"))


@pytest.fixture(scope="module")
def rl_reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rl_uninterrupted") / "run"
    finish(rl_iter(out))
    return out


# Where rl_iter.py is killed: once this path of its run folder appears.
RL_KILL_POINTS = {
    # iteration 1's first exploration episode is on disk, the others are pending
    "mid_rollouts": "iter_001/rollouts.jsonl",
    # iteration 1's router is saved, its held-out evaluation is running: the rerun must reuse that checkpoint (the
    # fine-tune is deterministic), not train and save step 1 again
    "after_checkpoint_before_metrics": "checkpoints/1",
}


@pytest.mark.parametrize("kill_point", RL_KILL_POINTS)
def test_rl_iter_kill_9_then_rerun_finishes_like_an_uninterrupted_run(tmp_path, rl_reference, kill_point):
    from hera_jax.rl.run import finished_iterations
    from hera_jax.router.checkpoint import load_router

    out = tmp_path / "killed"
    kill_9_once_on_disk(rl_iter(out), out / RL_KILL_POINTS[kill_point])
    assert finished_iterations(out) == 0  # killed inside iteration 1: the IL start is evaluated, nothing more
    rollouts = out / "iter_001" / "rollouts.jsonl"
    reference_rollouts = episodes(rl_reference / "iter_001" / "rollouts.jsonl")
    if kill_point == "mid_rollouts":
        assert 1 <= len(episodes(rollouts)) < len(reference_rollouts)
        pending = add_what_a_kill_mid_write_leaves(rollouts, reference_rollouts)
    else:
        assert list(episodes(rollouts)) == list(reference_rollouts)
    on_disk = {name: ((out / name).read_bytes(), read_steps(out / name)[1].problems, episodes(out / name))
               for name in jsonl_files(out)}  # what the killed run left of every rollout and evaluation file
    if kill_point == "mid_rollouts":
        assert any("truncated last line" in p for p in on_disk["iter_001/rollouts.jsonl"][1])
        assert any(f"episode {pending} has 2 of" in p for p in on_disk["iter_001/rollouts.jsonl"][1])

    output = finish(rl_iter(out))
    assert "iterations 0..0 finished, continuing at 1" in output.replace("\n", "")
    assert jsonl_files(out) == jsonl_files(rl_reference)
    for name in jsonl_files(out):
        before, problems, kept = on_disk.get(name, (b"", [], {}))
        assert_resumed_like_reference(out / name, before, problems, kept, episodes(rl_reference / name))

    # every iteration finished once, with the numbers and the router of the uninterrupted run
    assert finished_iterations(out) == 2
    for i in range(3):
        assert comparable_metrics(out, i) == comparable_metrics(rl_reference, i), f"iteration {i}"
        resumed, straight = (load_router(d / "checkpoints", step=i).params for d in (out, rl_reference))
        jax.tree.map(np.testing.assert_array_equal, resumed, straight)
    summary = json.loads((out / "summary.json").read_text())
    assert [m["iteration"] for m in summary["iterations"]] == [0, 1, 2]


# --- experiments/evaluate.py --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def router(tmp_path_factory) -> Path:
    """A small untrained router with the shipped features spec (its choices only need to be reproducible)."""
    from hera_jax.features import FeatureSpec
    from hera_jax.router.checkpoint import save_router
    from hera_jax.router.model import RouterMLP
    from hera_jax.router.train import TrainConfig

    path = tmp_path_factory.mktemp("router") / "checkpoint"
    spec = FeatureSpec()
    params = RouterMLP((8,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(path, 0, params, TrainConfig(hidden_sizes=(8,)), spec, {})
    return path


def evaluate(folder: Path, router: Path) -> subprocess.Popen:
    # each run its own features cache, so the killed run's lost in-memory embeddings are really re-embedded
    return start("evaluate.py", [*EVAL_ARGS, "--routers", f"r={router}", "--features-cache",
                                 str(folder / "features"), "--out", str(folder / "eval")])


@pytest.fixture(scope="module")
def eval_reference(tmp_path_factory, router) -> Path:
    folder = tmp_path_factory.mktemp("eval_uninterrupted")
    finish(evaluate(folder, router))
    return folder / "eval"


def test_evaluate_kill_9_mid_episodes_then_rerun_finishes_like_an_uninterrupted_run(tmp_path, router,
                                                                                    eval_reference):
    out = tmp_path / "eval"
    rollouts = out / "rollouts.jsonl"
    kill_9_once_on_disk(evaluate(tmp_path, router), rollouts)
    kept = episodes(rollouts)
    reference = episodes(eval_reference / "rollouts.jsonl")
    assert 1 <= len(kept) < len(reference)
    assert not (out / "points.csv").exists()
    pending = add_what_a_kill_mid_write_leaves(rollouts, reference)
    before_rerun = rollouts.read_bytes()
    problems_before = read_steps(rollouts)[1].problems
    assert any("truncated last line" in p for p in problems_before)
    assert any(f"episode {pending} has 2 of" in p for p in problems_before)

    output = finish(evaluate(tmp_path, router))
    assert f"{len(reference) - len(kept)} episodes run ({len(kept)} already on disk)" in output.replace("\n", "")
    assert_resumed_like_reference(rollouts, before_rerun, problems_before, kept, reference)
    # the report is built from every episode once: the same tables as the uninterrupted run's
    for name in ("episodes.csv", "points.csv"):
        assert (out / name).read_bytes() == (eval_reference / name).read_bytes(), name
