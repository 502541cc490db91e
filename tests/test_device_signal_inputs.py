"""The device's confidence as router input (`--features.scalar-features ... device_logprob ...`): the features,
the train-split standardization folded into the first layer, the scorer that asks the device first, and the
commands that cannot use such a router refusing it in one line."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.agents.base import AgentStep
from hera_jax.dataset import load_il_table
from hera_jax.errors import HeraError
from hera_jax.evaluate.context import ProbedAgent
from hera_jax.features import DEVICE_SIGNALS, LOGPROB_FLOOR, FeatureSpec, FeatureSpecError, featurize, scalar_features
from hera_jax.router.checkpoint import load_router, save_router
from hera_jax.router.il import train_and_evaluate
from hera_jax.router.model import (
    RouterMLP,
    column_standardization,
    fold_standardization,
    p_cloud,
    standardize_columns,
)
from hera_jax.router.scorer import RouterScorer, StateEmbedder
from hera_jax.router.train import TrainConfig
from hera_jax.state import AgentState
from tests.conftest import ROOT
from tests.test_rl_loop import DIM, bag_of_words

SIGNAL_SPEC = FeatureSpec("toy-bag-of-words", DIM, scalar_features=("step_frac", "device_logprob", "device_margin"),
                          text_design="joint")
GEMMA_ALFWORLD = ROOT / "data" / "alfworld_gemma270m"


def test_device_signal_features_are_the_signals_and_refuse_missing_or_nan_values():
    steps = np.array([0, 25, 100])
    signals = {"device_logprob": np.array([-0.5, -40.0, -2.0]), "device_margin": np.array([0.1, 0.0, 0.9])}
    x = scalar_features(steps, SIGNAL_SPEC, signals)
    np.testing.assert_allclose(x, [[0.0, -0.5, 0.1], [0.5, LOGPROB_FLOOR, 0.0], [1.0, -2.0, 0.9]], rtol=1e-6)
    assert SIGNAL_SPEC.device_signals == ("device_logprob", "device_margin")
    assert SIGNAL_SPEC.device_signal_columns == (DIM + 1, DIM + 2)
    with pytest.raises(FeatureSpecError, match="'device_logprob' is the device's confidence"):
        scalar_features(steps, SIGNAL_SPEC)
    with pytest.raises(FeatureSpecError, match=r"'device_margin': 1 of 3 state\(s\) have no device_margin"):
        scalar_features(steps, SIGNAL_SPEC, {**signals, "device_margin": np.array([0.1, np.nan, 0.2])})
    with pytest.raises(FeatureSpecError, match="unknown scalar feature"):
        FeatureSpec(scalar_features=("device_confidence",))


def test_folded_standardization_gives_raw_inputs_the_standardized_p_cloud():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 6)) * np.array([1, 1, 1, 1, 0.1, 30]) + np.array([0, 0, 0, 0, -3, 50]),
                    jnp.float32)
    columns = jnp.asarray([4, 5])
    model = RouterMLP((8, 4))
    params = model.init(jax.random.key(1), x)["params"]
    shift, scale = column_standardization(x, columns)
    standardized = standardize_columns(x, columns, shift, scale)
    np.testing.assert_allclose(np.asarray(standardized[:, 4:]).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(standardized[:, 4:]).std(0), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(standardized[:, :4]), np.asarray(x[:, :4]))  # other columns untouched
    folded = fold_standardization(params, columns, shift, scale)
    np.testing.assert_allclose(np.asarray(p_cloud(model, folded, x)), np.asarray(p_cloud(model, params, standardized)),
                               rtol=1e-4, atol=1e-5)
    # a constant column is left as it is rather than divided by zero
    _, constant_scale = column_standardization(jnp.ones((5, 2)), jnp.asarray([0, 1]))
    np.testing.assert_array_equal(np.asarray(constant_scale), [1.0, 1.0])


@pytest.fixture(scope="module")
def gemma_alfworld():
    table = load_il_table(GEMMA_ALFWORLD)

    def no_encoder(texts):
        raise AssertionError(f"the shipped features cache should cover every state, asked to embed {len(texts)}")

    def features(spec):
        return featurize(table.state_key, table.state_text, table.step, spec, GEMMA_ALFWORLD / "features",
                         encode=no_encoder, signals=table.device_signals)[0]

    return table, features


def test_the_shipped_gemma_dataset_carries_every_device_signal(gemma_alfworld):
    table, _ = gemma_alfworld
    assert set(table.device_signals) == set(DEVICE_SIGNALS)
    for name, values in table.device_signals.items():
        assert values.shape == (len(table),) and np.isfinite(values).all(), name
    assert ((table.device_signals["device_p_top"] > 0) & (table.device_signals["device_p_top"] <= 1)).all()


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_device_signals_as_inputs_beat_the_text_router_on_alfworld_with_gemma(gemma_alfworld):
    """On ALFWorld the real device's own log-likelihood predicts its disagreement far better than the state text
    (experiments/results/alfworld-gemma-2026-12-04); with its signals as inputs the router must use them."""
    table, features = gemma_alfworld
    config = TrainConfig(seed=0)
    text_spec = FeatureSpec()
    signal_spec = FeatureSpec(scalar_features=("step_frac", *DEVICE_SIGNALS))
    _, _, text_metrics, _ = train_and_evaluate(table, features(text_spec), config, GEMMA_ALFWORLD)
    params, _, signal_metrics, _ = train_and_evaluate(table, features(signal_spec), config, GEMMA_ALFWORLD,
                                                      standardize=signal_spec.device_signal_columns)
    assert signal_metrics["test"]["auroc"] > text_metrics["test"]["auroc"] + 0.05, (signal_metrics, text_metrics)
    assert signal_metrics["dev"]["auroc"] > text_metrics["dev"]["auroc"] + 0.03
    # the returned parameters take raw features (standardization folded in): they score the metrics' own AUROC
    from hera_jax.router.metrics import auroc

    test = table.mask("test")
    scores = p_cloud(RouterMLP((256, 128)), params, jnp.asarray(features(signal_spec))[test])
    assert float(auroc(scores, jnp.asarray(table.label[test]))) == pytest.approx(signal_metrics["test"]["auroc"],
                                                                                 abs=1e-4)


class CountingDevice:
    name = "counting-device"
    is_stand_in = False
    confidence_signals = frozenset({"logprob", "margin"})

    def __init__(self, logprob: float):
        self.logprob = logprob
        self.calls = 0

    def act(self, state):
        self.calls += 1
        return AgentStep(action=state.valid_actions[0], logprob=self.logprob, margin=0.2)


@pytest.fixture(scope="module")
def signal_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals") / "checkpoint"
    params = RouterMLP((16,)).init(jax.random.key(3), jnp.zeros((1, SIGNAL_SPEC.input_dim)))["params"]
    params = jax.tree.map(lambda p: p * 8.0, params)  # spread p_cloud over (0, 1)
    save_router(folder, 0, params, TrainConfig(hidden_sizes=(16,)), SIGNAL_SPEC, {})
    return folder


def test_a_router_on_device_signals_asks_the_device_once_and_routes_on_its_answer(signal_checkpoint, tmp_path):
    bundle = load_router(signal_checkpoint)
    state = AgentState(task_description="open the door", observation="a key", valid_actions=("take key", "look"),
                       history=(), step=3)
    text = "Task: open the door\nNow: a key"

    def scorer_with(logprob):
        device = ProbedAgent(CountingDevice(logprob))
        return RouterScorer(bundle, StateEmbedder(SIGNAL_SPEC, tmp_path, encode=bag_of_words), device=device), device

    sure, sure_device = scorer_with(-0.1)
    unsure, _ = scorer_with(-6.0)
    p_sure = sure(state, text, 0)
    assert sure(state, text, 0) == p_sure and sure_device.agent.calls == 1  # asked once, then remembered
    assert sure_device.act(state).logprob == -0.1  # the device acts with the answer the router read
    assert unsure(state, text, 0) != pytest.approx(p_sure)
    expected = sure.score([text], [3], {"device_logprob": [-0.1], "device_margin": [0.2]})[0]
    assert p_sure == pytest.approx(float(expected))
    sure.prefetch([text], [3])  # the engine's batch prefetch scores nothing without the device's answers
    no_device = RouterScorer(bundle, StateEmbedder(SIGNAL_SPEC, tmp_path, encode=bag_of_words))
    with pytest.raises(HeraError, match="routes only where the device is asked first"):
        no_device(state, text, 0)
    with pytest.raises(HeraError, match="score it with the device's signals"):
        no_device.score([text], [3])


def test_the_serving_proxy_refuses_a_router_on_device_signals(signal_checkpoint):
    from hera_jax.serve.router_api import Router

    with pytest.raises(HeraError, match="the serving proxy does not have"):
        Router.load(signal_checkpoint, encode=bag_of_words)


def test_stage2_refuses_a_router_on_device_signals_before_writing(tmp_path):
    import dataclasses

    from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
    from hera_jax.rl import open_run
    from tests.test_rl_loop import KeyRoomEnv, _config

    config = dataclasses.replace(_config(tmp_path / "rl", 1), features=SIGNAL_SPEC)
    with pytest.raises(HeraError, match="stage 2 does not route with them yet"):
        open_run(config, config.out, KeyRoomEnv(), GoldPathOracle(), PerturbedGoldDevice(seed=0), GEMMA_ALFWORLD,
                 GEMMA_ALFWORLD / "features", encode=bag_of_words)
    assert not (tmp_path / "rl").exists()


def test_evaluate_refuses_a_router_on_device_signals_with_a_stand_in_device(signal_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, "experiments/evaluate.py", "--env", "textworld_express:twc", "--routers",
         f"s={signal_checkpoint}", "--out", str(tmp_path / "eval")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "router s takes the device's device_logprob, device_margin as input, which device" in result.stderr
    assert "Traceback" not in result.stderr
