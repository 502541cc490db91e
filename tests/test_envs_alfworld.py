"""ALFWorld for real: a handful of games unpacked from ALFWorld's game data into a temporary $ALFWORLD_DATA.

The games are copied from `$ALFWORLD_DATA` (alfworld-download's folder) when it holds them, else unpacked from the
team's copy of ALFWorld's data (`../shared/alfworld/json_2.1.1.tar.gz`, or `$ALFWORLD_TARBALL`). No game file is
ever part of the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hera_jax.agents import make_agent
from hera_jax.envs import make_env
from hera_jax.envs import alfworld as alf
from hera_jax.rollout.engine import EngineConfig, Job, Policy, WorkerSetup, run_jobs
from hera_jax.rollout.episode import Choice, EpisodeSettings, EpisodeSpec
from hera_jax.rollout.records import read_steps

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TARBALL = Path(os.environ.get("ALFWORLD_TARBALL", ROOT.parent / "shared" / "alfworld" / "json_2.1.1.tar.gz"))
# One game of each task type from valid_unseen (the held-out split), and two train games.
GAMES = {
    "valid_unseen": ("pick_and_place_simple-", "look_at_obj_in_light-", "pick_clean_then_place_in_recep-",
                     "pick_heat_then_place_in_recep-", "pick_cool_then_place_in_recep-", "pick_two_obj_and_place-"),
    "train": ("pick_and_place_simple-", "look_at_obj_in_light-"),
}
COLLECT = [sys.executable, str(ROOT / "experiments" / "collect.py"), "--env", "alfworld", "--no-progress"]


def _first_games(names: list[str]) -> set[str]:
    """`json_2.1.1/<split>/<folder>/<trial>` of the first supported game of each wanted task type (sorted names)."""
    trials = sorted({"/".join(n.split("/")[:4]) for n in names if n.count("/") >= 4})
    wanted = set()
    for split, prefixes in GAMES.items():
        for prefix in prefixes:
            wanted.add(next(t for t in trials if t.startswith(f"json_2.1.1/{split}/{prefix}")
                            and "movable" not in t and "Sliced" not in t))
    return wanted


@pytest.fixture(scope="module")
def alfworld_data(tmp_path_factory) -> Path:
    """A temporary $ALFWORLD_DATA with the 8 games of GAMES, from $ALFWORLD_DATA's games or the tarball."""
    try:
        import alfworld  # noqa: F401
    except ImportError:
        pytest.fail("the alfworld package is missing: pip install -e '.[all]' (or '.[alfworld]')")
    root = tmp_path_factory.mktemp("alfworld_data")
    installed = Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()
    if (installed / "json_2.1.1" / "valid_unseen").is_dir():  # alfworld-download's copy
        names = [str(p.relative_to(installed)) for p in installed.glob("json_2.1.1/*/*/*/game.tw-pddl")]
        for trial in _first_games(names):
            shutil.copytree(installed / trial, root / trial)
    elif TARBALL.is_file():
        with tarfile.open(TARBALL) as tar:
            members = tar.getmembers()
            wanted = _first_games([m.name for m in members])
            tar.extractall(root, members=[m for m in members if "/".join(m.name.split("/")[:4]) in wanted],
                           filter="data")
    else:
        pytest.fail(f"ALFWorld's game data is missing: neither $ALFWORLD_DATA ({installed}) nor {TARBALL} holds it "
                    "(run alfworld-download, or set $ALFWORLD_TARBALL to json_2.1.1.tar.gz)")
    assert len(list(root.glob("json_2.1.1/*/*/*/game.tw-pddl"))) == 8
    return root


def _env_with(data: Path) -> dict:
    return {**os.environ, "ALFWORLD_DATA": str(data)}


def test_replanning_expert_wins_every_held_out_game_through_the_engine(alfworld_data, tmp_path):
    """Cloud-only with the stand-in cloud (ALFWorld's hand-coded expert) on one held-out game per task type."""
    out = tmp_path / "cloud"
    result = subprocess.run([*COLLECT, "--out", str(out), "--mode", "cloud", "--train-per-task", "0",
                             "--dev-per-task", "0", "--test-per-task", "1"],
                            env=_env_with(alfworld_data), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows, report = read_steps(out / "steps.jsonl")
    assert report.problems == []
    by_episode = {}
    for row in rows:
        by_episode.setdefault(row["episode_id"], []).append(row)
    assert len(by_episode) == 6
    assert all(rows[-1]["success"] for rows in by_episode.values()), {e: len(r) for e, r in by_episode.items()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["agents"]["cloud"]["name"] == "replanning-expert-oracle"
    assert "stand-in" in manifest["agents"]["cloud"]["note"] and manifest["env"]["name"] == "alfworld"


def test_expert_replans_after_a_device_mistake(alfworld_data, monkeypatch):
    """After a wrong 'go to', the expert's next action differs from the walkthrough's and still wins."""
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_data))
    env = make_env("alfworld", step_limit=60)
    try:
        task = "pick_and_place_simple"
        [variation] = env.variations(task, "test")
        first = env.reset(task, variation)
        wrong = next(a for a in first.valid_actions if a.startswith("go to") and a != first.gold_path[0])
        result = env.step(wrong)
        actions = [wrong]
        for _ in range(50):
            if result.done:
                break
            actions.append(result.expert_action)
            result = env.step(result.expert_action)
        assert result.success, actions
        assert actions[1] != first.gold_path[1]  # it walked back instead of following the stored walkthrough
    finally:
        env.close()


def _play(env, task: str, variation: int, device_every: int = 3) -> list[tuple]:
    """Observations, valid actions and expert actions of an episode: the expert acts, but a wrong 'go to' replaces
    every `device_every`-th action (so the expert's tie-breaks and re-plans are exercised)."""
    first = env.reset(task, variation)
    seen = [(first.observation, tuple(first.valid_actions), first.expert_action)]
    expert, valid = first.expert_action, first.valid_actions
    for step in range(30):
        wrong = [a for a in sorted(valid) if a.startswith("go to") and a != expert]
        result = env.step(wrong[step % len(wrong)] if step % device_every == 2 and wrong else expert)
        seen.append((result.observation, tuple(result.valid_actions), result.expert_action))
        if result.done:
            break
        expert, valid = result.expert_action, result.valid_actions
    return seen


def test_a_reused_simulator_gives_the_episodes_of_fresh_ones(alfworld_data, monkeypatch):
    """The engine reuses an ALFWorld simulator (`reuse_safe`), keeping a loaded game for its next episode."""
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_data))
    tasks = [("pick_heat_then_place_in_recep", "test"), ("look_at_obj_in_light", "train")]
    fresh = {}
    for task, split in tasks:
        env = make_env("alfworld", step_limit=60)
        fresh[task] = _play(env, task, env.variations(task, split)[0])
        env.close()
    reused = make_env("alfworld", step_limit=60)
    try:
        assert reused.reuse_safe
        for task, split in [*tasks, *tasks[:1], *tasks[:1]]:  # another game between, then the same game twice
            assert _play(reused, task, reused.variations(task, split)[0]) == fresh[task]
    finally:
        reused.close()


def test_a_routed_episode_runs_through_the_engine_and_its_records_validate(alfworld_data, monkeypatch, tmp_path):
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_data))
    cloud, device = make_agent("cloud", "expert"), make_agent("device", "perturbed-expert", seed=0)

    def alternate(state, text, cloud_calls):  # device on even steps, cloud on odd ones
        return Choice("cloud" if state.step % 2 else "device", "alternate", float(state.step % 2))

    setup = WorkerSetup(make_env=lambda: make_env("alfworld", step_limit=70), cloud=cloud, device=device,
                        policies={"alt": Policy(alternate)}, settings=EpisodeSettings(max_steps=60))
    specs = [EpisodeSpec("alfworld", task, variation, "test", f"alfworld/{task}/{variation}/alt")
             for task in ("pick_clean_then_place_in_recep", "look_at_obj_in_light")
             for variation in make_env("alfworld").variations(task, "test")]
    report = run_jobs([Job(s, "alt") for s in specs], tmp_path / "steps.jsonl", lambda: setup,
                      EngineConfig(batch_size=2), show_progress=False)
    assert report.episodes_run == 2
    rows, load = read_steps(tmp_path / "steps.jsonl")
    assert load.problems == [] and len(rows) == report.steps_run
    assert {r["actor"] for r in rows} == {"device", "cloud"}
    assert all((r["actor"] == "cloud") == (r["step"] % 2 == 1) for r in rows)
    assert all(r["action"] == r[f"{r['actor']}_action"] for r in rows)


def test_resumed_collection_equals_a_straight_one_across_hash_seeds(alfworld_data, tmp_path):
    """IL replay collection: half of it, then the whole (resumed), in processes with other hash seeds and another
    lockstep batch size, gives the same records as one straight run: nothing depends on set order or global random."""
    args = ["--tasks", "pick_and_place_simple", "look_at_obj_in_light", "--train-per-task", "1",
            "--dev-per-task", "0", "--test-per-task", "1"]

    def collect(out: Path, hash_seed: str, *extra: str) -> None:
        env = {**_env_with(alfworld_data), "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([*COLLECT, "--out", str(out), *args, *extra], env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    collect(straight, "1")
    collect(resumed, "2", "--tasks", "pick_and_place_simple")  # the first half ...
    collect(resumed, "3", "--engine.batch-size", "2")  # ... then the rest, resumed
    straight_rows, _ = read_steps(straight / "steps.jsonl")
    resumed_rows, _ = read_steps(resumed / "steps.jsonl")
    assert len(straight_rows) > 8
    key = lambda r: (r["episode_id"], r["step"])  # noqa: E731
    assert sorted(straight_rows, key=key) == sorted(resumed_rows, key=key)
    assert any(r["device_action"] != r["cloud_action"] for r in straight_rows)  # the device stand-in errs


def test_missing_game_data_is_one_line_naming_the_variable(tmp_path):
    result = subprocess.run([*COLLECT, "--out", str(tmp_path / "ds")],
                            env={**os.environ, "ALFWORLD_DATA": str(tmp_path / "nowhere")},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "$ALFWORLD_DATA" in lines[0] and "alfworld-download" in lines[0], result.stderr
    assert not (tmp_path / "ds" / "steps.jsonl").exists()
