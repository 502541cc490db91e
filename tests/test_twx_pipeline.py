"""TextWorldExpress through rl_iter.py and evaluate.py (tiny runs), and routers evaluated across environments."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import pandas as pd
import pytest

from hera_jax.envs.profiles import PROFILES, SHIPPED_DATASETS
from hera_jax.evaluate import evaluate_app as evaluate_cli
from hera_jax.evaluate.routers import router_training
from hera_jax.rl import rl_app as rl_cli
from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec
from hera_jax.rl import RLConfig
from hera_jax.rollout.engine import EngineConfig
from hera_jax.router.checkpoint import load_router, save_router
from hera_jax.router.model import RouterMLP
from hera_jax.rl.train import PreferenceTrainConfig
from hera_jax.router.train import TrainConfig

pytestmark = pytest.mark.slow  # runs a simulator or a notebook (the full run keeps it; -m "not slow" skips)

pytest.importorskip("textworld_express")

TWC = "textworld_express:twc"




def _router(path, trained_on, hidden=(8,), seed=0):
    """A small untrained router with the shipped datasets' feature spec, claiming `trained_on`."""
    spec = FeatureSpec()
    params = RouterMLP(hidden).init(jax.random.key(seed), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(path, 0, params, TrainConfig(hidden_sizes=hidden), spec, {"trained_on": trained_on})
    return path


def _source(env, **settings):
    return {"dataset": str(SHIPPED_DATASETS[env]), "env": env, "unseen_tasks": [],
            "history_k": 3, "max_obs_chars": 400, **settings}


def test_per_environment_defaults():
    assert (RLConfig().train_variations, RLConfig().eval_variations) == (50, 20)
    twc = RLConfig(env=TWC)
    assert (twc.train_variations, twc.eval_variations) == (140, 12)
    assert RLConfig(env=TWC, eval_variations=1).eval_variations == 1  # an explicit value wins
    assert set(SHIPPED_DATASETS) == {"scienceworld", "textworld_express:twc", "textworld_express:cookingworld",
                                     "alfworld"}
    assert all(path.is_dir() for path in SHIPPED_DATASETS.values())
    assert {name for name, p in PROFILES.items() if p.dataset is None} == {"webshop", "appworld"}
    # ALFWorld's cloud stand-in re-plans, so its episodes are not cut at a multiple of the walkthrough's length
    assert (RLConfig().max_steps_gold_factor, RLConfig(env="alfworld").max_steps_gold_factor) == (2.0, 0.0)
    assert evaluate_cli.EvalConfig(env="alfworld").max_steps_gold_factor == 0.0
    ev = evaluate_cli.EvalConfig()
    assert (ev.dev_per_task, ev.test_per_task, ev.unseen_per_task) == (2, 100, 5)
    assert evaluate_cli.EvalConfig(env=TWC).test_per_task == 134


def _hashed_encoder(model, show_progress=False, **_):
    """Stands in for MiniLM on states first met in rollouts (keeps the test fast; the IL states come from the
    shipped MiniLM cache): a deterministic hashed bag of words, unit-normalised, 384-d."""
    import hashlib

    import numpy as np

    def encode(texts):
        out = np.zeros((len(texts), 384), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 384] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    return encode


def test_rl_iter_runs_on_twc(tmp_path, monkeypatch):
    import hera_jax.router.scorer

    monkeypatch.setattr(hera_jax.router.scorer, "sentence_encode_fn", _hashed_encoder)
    out = tmp_path / "rl"
    config = RLConfig(
        env=TWC, iters=1, tasks=("twc-easy",), train_variations=1, rollouts_per_task=2, eval_variations=1,
        max_steps=6, il_train=TrainConfig(hidden_sizes=(16,), max_epochs=4, patience=4),
        train=PreferenceTrainConfig(epochs=3), out=out, progress=False,
        features=FeatureSpec(text_design="joint"),  # whole-state embeddings: rollout states are new to the cache
    )
    history = rl_cli.train_rl(config)
    assert [m["iteration"] for m in history] == [0, 1]
    assert history[0]["baselines"]["cloud_only"]["success_rate"] == 1.0  # the gold-path stand-in solves twc-easy
    assert history[1]["rollouts"]["episodes"] == 2 and history[1]["groups"]["visits"] > 0
    assert history[1]["agents_are_stand_ins"] is True
    rows = [json.loads(line) for line in (out / "iter_001" / "rollouts.jsonl").read_text().splitlines()]
    assert {r["env"] for r in rows} == {TWC} and {r["task"] for r in rows} == {"twc-easy"}
    assert json.loads((out / "config.json").read_text())["eval_variations"] == 1
    assert load_router(out / "checkpoints", step=1).feature_spec == FeatureSpec(text_design="joint")
    assert history[1]["rollouts"]["newly_embedded_states"] > 0  # states met in rollouts went through the encoder


def test_rl_iter_refuses_a_dataset_of_another_environment(tmp_path):
    config = RLConfig(env="textworld_express:cookingworld", dataset=SHIPPED_DATASETS[TWC], out=tmp_path / "rl")
    with pytest.raises(HeraError, match=r"env.name is 'textworld_express:twc', not --env "
                                        r"'textworld_express:cookingworld'"):
        rl_cli.train_rl(config)
    assert not (tmp_path / "rl").exists()
    rl_cli.check_dataset_env("webshop", "webshop:http://host:3000", SHIPPED_DATASETS[TWC])  # base name matches
    with pytest.raises(HeraError):
        rl_cli.check_dataset_env("scienceworld", TWC, SHIPPED_DATASETS[TWC])


def _eval_config(tmp_path, routers, **kwargs):
    return evaluate_cli.EvalConfig(
        env=TWC, routers=routers, tasks=("twc-easy",), dev_per_task=1, test_per_task=1, unseen_per_task=1,
        thresholds=(0.5,), baselines=("oracle",), max_steps=6, features_cache=tmp_path / "features",
        out=tmp_path / "eval", progress=False, **kwargs,
    )


def test_evaluate_runs_on_twc_with_a_router_trained_on_scienceworld(tmp_path, capsys):
    sw = _router(tmp_path / "sw", [_source("scienceworld", unseen_tasks=["melt"])])
    summary = evaluate_cli.evaluate(_eval_config(tmp_path, (f"sw={sw}",)))
    out = tmp_path / "eval"
    config = json.loads((out / "config.json").read_text())
    # the ScienceWorld router's unseen tasks do not exist here: TWC's default unseen preset is used instead
    assert config["unseen_tasks"] == ["twc-doors"] and config["seen_tasks"] == ["twc-easy"]
    assert config["router_training"]["sw"][0]["env"] == "scienceworld"
    assert summary["router_training"]["sw"][0]["env"] == "scienceworld"
    assert any("router sw was trained on scienceworld only" in n for n in summary["notes"])
    episodes = pd.read_csv(out / "episodes.csv")
    assert set(episodes.task) == {"twc-easy", "twc-doors"}
    assert set(episodes.method) == {"sw", "oracle", "device_only", "cloud_only"}
    points = pd.read_csv(out / "points.csv")
    assert set(points.label[points.method == "sw"]) == {"router: sw (trained on scienceworld)"}
    printed = capsys.readouterr().out
    assert "STAND-INS" in printed
    assert f"router sw: checkpoint step 0 of {sw}" in printed.replace("\n", "")  # which checkpoint was picked
    assert config["routers"] == {"sw": f"{sw}@0"}
    assert {h["method"] for h in summary["headline"]} >= {"sw", "oracle"}


def test_identical_evaluations_give_identical_records_and_points(tmp_path, monkeypatch):
    """Issue 14 finding 4: the same command and seeds give the same rollouts and the same points.csv (with its
    bootstrap intervals); each episode runs on a fresh simulator, so nothing depends on what ran before."""
    import hera_jax.router.scorer

    monkeypatch.setattr(hera_jax.router.scorer, "sentence_encode_fn", _hashed_encoder)
    router = _router(tmp_path / "twc", [_source(TWC)])
    outs = []
    for run in ("a", "b"):
        config = dataclasses.replace(_eval_config(tmp_path / run, (f"r={router}",)), baselines=("random",),
                                     random_rates=(0.5,), thresholds=(0.3, 0.7),
                                     engine=EngineConfig(batch_size=2 if run == "a" else 3))
        evaluate_cli.evaluate(config)
        outs.append(tmp_path / run / "eval")
    a, b = outs
    assert (a / "rollouts.jsonl").read_bytes() == (b / "rollouts.jsonl").read_bytes()
    assert (a / "points.csv").read_bytes() == (b / "points.csv").read_bytes()
    assert len(pd.read_csv(a / "episodes.csv")) > 0


def test_evaluate_refuses_a_router_trained_on_another_state_format(tmp_path):
    other = _router(tmp_path / "k5", [_source("scienceworld", history_k=5)])
    with pytest.raises(HeraError, match=r"router k5 was trained on .* settings.history_k=5, but .* history_k=3"):
        evaluate_cli.evaluate(_eval_config(tmp_path, (f"k5={other}",)))
    assert not (tmp_path / "eval" / "rollouts.jsonl").exists()


def test_evaluate_refuses_a_dataset_of_another_environment(tmp_path):
    router = _router(tmp_path / "r", [_source(TWC)])
    config = _eval_config(tmp_path, (f"r={router}",), dataset=SHIPPED_DATASETS["scienceworld"])
    with pytest.raises(HeraError, match="env.name is 'scienceworld', not --env 'textworld_express:twc'"):
        evaluate_cli.evaluate(config)


def test_router_training_is_read_from_meta_il_metrics_or_rl_config(tmp_path):
    assert router_training(tmp_path / "x" / "checkpoint", {"trained_on": [{"env": "e"}]}) == [{"env": "e"}]
    il_run = tmp_path / "il"
    il_run.mkdir()
    (il_run / "metrics.json").write_text(json.dumps({"dataset": str(SHIPPED_DATASETS[TWC]),
                                                     "unseen_tasks": ["twc-doors"]}))
    [entry] = router_training(il_run / "checkpoint", {})
    assert (entry["env"], entry["unseen_tasks"], entry["history_k"]) == (TWC, ["twc-doors"], 3)
    rl_run = tmp_path / "rl"
    rl_run.mkdir()
    (rl_run / "config.json").write_text(json.dumps({"env": "textworld_express:cookingworld", "dataset": None}))
    [entry] = router_training(rl_run / "checkpoints", {})
    assert entry["env"] == "textworld_express:cookingworld"
    assert router_training(tmp_path / "nothing" / "checkpoint", {}) == []
