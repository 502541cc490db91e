"""experiments/sweep.py's IL-only vs IL+RL label axis, end to end on the rollouts of a real (tiny) RL run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec
from hera_jax import sweep_app
from hera_jax.sweep import SweepGrid, sweep_compiler_options
from hera_jax.router.train import TrainConfig
from tests.test_rl_loop import DIM, _config, _run, collect_keyroom_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep_cli():
    return sweep_app


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
    dataset = collect_keyroom_dataset(tmp_path_factory.mktemp("keyroom_il_for_sweep"))
    out = tmp_path_factory.mktemp("rl_for_sweep") / "run"
    _run(_config(out, 2), dataset)
    return dataset, out


def _sweep_config(sweep_cli, dataset, run, out, **kw):
    return sweep_cli.SweepConfig(
        dataset=dataset, features_dir=run / "features", features=FeatureSpec("toy-bag-of-words", DIM, text_design="joint"),
        unseen_tasks=(), rl_run=run, heldout_groups_percent=40, out=out,
        grid=SweepGrid(seeds=(0, 1), learning_rates=(3e-3,), hidden_sizes=((8,), (16,)),
                       label_sources=("il", "il+rl"), cost_weights=(0.0, 0.05)),
        train=TrainConfig(max_epochs=6, patience=6, batch_size=16), **kw)


@pytest.mark.slow  # a whole RL run and sweep command; the label sweep's math is in test_sweep.py's quick tests
def test_sweep_over_label_sources_and_cost_weights(sweep_cli, rl_run, tmp_path):
    dataset, run = rl_run
    summary = sweep_cli.sweep_experiment(_sweep_config(sweep_cli, dataset, run, tmp_path / "sweep"))
    frame = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert len(frame) == summary["num_configs"] == 2 * 3 * 2  # widths x (il, il+rl at 2 cost weights) x seeds
    assert summary["networks"] == summary["num_configs"]  # 8 + 16 units do not fit in 16: a network each
    assert summary["compiler_options"] == sweep_compiler_options()  # None on a CPU: cuBLAS GEMMs only on a GPU
    assert frame["labels"].unique().tolist() == ["il", "il+rl c=0", "il+rl c=0.05"]
    assert frame["best_dev_auroc"].between(0, 1).all()
    assert frame["heldout_rl_agreement"].between(0, 1).all() and frame["heldout_cloud_ratio"].between(0, 1).all()
    rl = summary["rl"]
    run_settings = json.loads((run / "config.json").read_text())
    assert rl["score_cost_weight"] == run_settings["preference"]["cost_weight"]  # scored at the run's own price by default
    assert 0 < rl["heldout_groups"] < rl["groups"] and rl["visits"] > 0
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 0
    # each label variant trains differently (same widths and seeds, in the same order)
    loss = {name: part["best_dev_loss"].to_numpy() for name, part in frame.groupby("labels")}
    assert not np.allclose(loss["il"], loss["il+rl c=0"]) and not np.allclose(loss["il+rl c=0"], loss["il+rl c=0.05"])


def test_il_rl_labels_need_an_rl_run(sweep_cli, rl_run, tmp_path):
    dataset, run = rl_run
    config = _sweep_config(sweep_cli, dataset, run, tmp_path / "a")
    with pytest.raises(HeraError, match="needs --rl-run"):
        sweep_cli.sweep_experiment(type(config)(**{**config.__dict__, "rl_run": None}))
    with pytest.raises(HeraError, match="no config.json"):
        sweep_cli.sweep_experiment(type(config)(**{**config.__dict__, "rl_run": tmp_path}))
    assert not (tmp_path / "a").exists()  # nothing written on bad input


@pytest.mark.parametrize("field, value, grid_flag", [("hidden_sizes", (8,), "--grid.hidden-sizes.0"),
                                                      ("learning_rate", 0.1, "--grid.learning-rates"),
                                                      ("seed", 3, "--grid.seeds")])
def test_a_trainer_setting_the_grid_replaces_is_refused_not_ignored(sweep_cli, tmp_path, field, value, grid_flag):
    import dataclasses

    from hera_jax.errors import HeraError

    # refused with the flags, by the config itself (its module loads no JAX: the error comes at once)
    with pytest.raises(HeraError, match=f"--train.{field.replace('_', '-')} is set by the grid.*{grid_flag}"):
        sweep_cli.SweepConfig(out=tmp_path / "sweep", train=dataclasses.replace(TrainConfig(), **{field: value}))
    assert not (tmp_path / "sweep").exists()
