"""TextWorldExpress adapter: registry names, folds, gold paths that succeed, stand-ins, collect CLI, shipped data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hera_jax.agents.stand_ins import GoldPathOracle, PerturbedGoldDevice, action_difficulty
from hera_jax.envs import UnknownTaskError, make_env
from hera_jax.envs.textworld_express import TASK_PRESETS, drop_move_reversals
from hera_jax.rollout import collect_app
from hera_jax.rollout.engine import run_episode
from hera_jax.rollout.episode import EpisodeSpec, always
from hera_jax.rollout.records import read_manifest, read_steps
from hera_jax.state import normalize_action

pytest.importorskip("textworld_express")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "twc": ROOT / "data" / "textworld_express_twc_standin",
    "cookingworld": ROOT / "data" / "textworld_express_cookingworld_standin",
}


@pytest.fixture(scope="module")
def twc():
    env = make_env("textworld_express:twc", step_limit=100)
    yield env
    env.close()


@pytest.fixture(scope="module")
def cooking():
    env = make_env("textworld_express:cookingworld", step_limit=100)
    yield env
    env.close()


def test_registry_names_select_the_game(twc, cooking):
    assert twc.name == "textworld_express:twc" and cooking.name == "textworld_express:cookingworld"
    assert twc.task_names() == list(TASK_PRESETS["twc"])
    assert cooking.task_names() == list(TASK_PRESETS["cookingworld"])
    with pytest.raises(UnknownTaskError, match="supported: textworld_express:twc"):
        make_env("textworld_express:no-such-game")
    with pytest.raises(UnknownTaskError, match="has no variants"):
        make_env("scienceworld:twc")
    with pytest.raises(UnknownTaskError, match="known tasks"):
        twc.reset("boil", 0)


def test_folds_are_disjoint_and_identify_the_split(twc):
    folds = {split: set(twc.variations("twc-easy", split)) for split in ("train", "dev", "test")}
    assert all(len(seeds) > 100 for seeds in folds.values())
    assert not (folds["train"] & folds["dev"] or folds["train"] & folds["test"] or folds["dev"] & folds["test"])
    for split, seeds in folds.items():
        assert twc.fold_of(min(seeds)) == split
    with pytest.raises(ValueError, match="split"):
        twc.variations("twc-easy", "validation")


@pytest.mark.parametrize("game,task", [(g, t) for g, tasks in TASK_PRESETS.items() for t in tasks])
def test_gold_path_is_valid_and_reaches_success(twc, cooking, game, task):
    env = twc if game == "twc" else cooking
    for split in ("train", "test"):
        seed = env.variations(task, split)[1]
        first = env.reset(task, seed)
        assert first.task_description and first.observation and first.valid_actions
        assert first.gold_path and first.gold_path[0] in first.valid_actions
        valid, result = first.valid_actions, None
        for action in first.gold_path:
            assert action in valid, f"gold action {action!r} not among valid actions"
            result = env.step(action)
            valid = result.valid_actions
            if result.done:
                break
        assert result.done and result.success and result.score == pytest.approx(1.0)


@pytest.mark.parametrize("game,task", [("twc", "twc-medium"), ("twc", "twc-doors"),
                                       ("cookingworld", "cookingworld-doors")])
def test_reset_is_deterministic_per_seed(twc, cooking, game, task):
    # with doors the simulator's own gold path wanders at random (15-35 steps for one seed); the adapter drops that
    env = twc if game == "twc" else cooking
    for seed in env.variations(task, "test")[:3]:
        first, *rest = (env.reset(task, seed) for _ in range(4))
        assert all((r.observation, r.gold_path) == (first.observation, first.gold_path) for r in rest)


def test_drop_move_reversals_removes_back_and_forth_walks_only():
    path = ("open door to north", "move west", "Move East", "move north", "move south", "take cap", "move south",
            "move north", "move east", "put cap in box")
    assert drop_move_reversals(path) == ("open door to north", "take cap", "move east", "put cap in box")
    walk = ("move north", "move west", "move east", "move south")  # a loop back to the start with nothing done
    assert drop_move_reversals(walk) == ()
    assert drop_move_reversals(("move north", "take cap", "move south", "put cap in box", "move west")) == (
        "move north", "take cap", "move south", "put cap in box")


def test_invalid_action_keeps_the_episode_going(twc):
    twc.reset("twc-easy", 0)
    result = twc.step("dance wildly")
    assert not result.done and not result.success and result.valid_actions


def test_twx_verb_difficulties_leave_scienceworld_unchanged():
    assert action_difficulty("move west") == "easy"
    assert action_difficulty("open door to north") == "easy"
    assert action_difficulty("put clean blue socks in chest of drawers") == "hard"
    assert action_difficulty("slice red hot pepper") == "hard" and action_difficulty("prepare meal") == "hard"
    assert action_difficulty("take cookbook") == "medium"
    # ScienceWorld actions keep their old classes.
    assert action_difficulty("put down metal pot") == "medium"
    assert action_difficulty("move metal pot to stove") == "medium"
    assert action_difficulty("go to kitchen") == "easy"
    assert action_difficulty("focus on water") == "hard"


def test_stand_ins_on_twc(twc):
    task = "twc-hard"
    disagreements = steps = 0
    for seed in twc.variations(task, "train")[:5]:
        spec = EpisodeSpec(twc.name, task, seed, "train", f"t/{seed}")
        records = run_episode(twc, spec, GoldPathOracle(), PerturbedGoldDevice(), always("cloud"), replay="device")
        assert records[-1].success and records[-1].done
        steps += len(records)
        disagreements += sum(normalize_action(r.device_action) != normalize_action(r.cloud_action) for r in records)
    assert 0.1 < disagreements / steps < 0.8  # the device errs on some states, not all


def test_collect_cli_on_twc(tmp_path):
    out = tmp_path / "twc"
    config = collect_app.CollectConfig(
        out=out, env="textworld_express:twc", train_per_task=1, dev_per_task=1, test_per_task=1, progress=False
    )
    collect_app.collect_dataset(config)
    rows, report = read_steps(out / "steps.jsonl")
    assert not report.problems and report.num_episodes == 3 * len(TASK_PRESETS["twc"])
    assert {r["split"] for r in rows} == {"train", "dev", "test"}
    manifest = read_manifest(out)
    assert manifest["env"] == {"name": "textworld_express:twc", "version": manifest["env"]["version"]}


@pytest.mark.parametrize("game,min_episodes", [("twc", 200), ("cookingworld", 100)])
def test_shipped_dataset_loads_and_has_both_labels(game, min_episodes):
    folder = SHIPPED[game]
    rows, report = read_steps(folder / "steps.jsonl", strict=True)
    assert report.num_episodes >= min_episodes
    positive = sum(normalize_action(r["device_action"]) != normalize_action(r["cloud_action"]) for r in rows)
    assert 0.2 < positive / len(rows) < 0.6
    assert {r["task"] for r in rows} == set(TASK_PRESETS[game])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["command"].startswith(f"python experiments/collect.py --env textworld_express:{game}")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20 * 2**20
