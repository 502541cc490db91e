"""The STAND-IN limit baselines: bayes (the stand-in device's error model) and bayes_harm (expected harm)."""


import numpy as np
import pytest

from hera_jax.agents.stand_ins import GoldPathOracle, PerturbedGoldDevice
from hera_jax.evaluate.baselines import BASELINES, LIMIT_BASELINES, bayes, bayes_harm, oracle
from hera_jax.evaluate.context import EvalContext, ProbedAgent
from hera_jax.state import AgentState

GOLD = ("go to kitchen", "pick up thermometer", "focus on thermometer", "use thermometer on water")
VALID = ("go to kitchen", "go to hallway", "pick up thermometer", "pick up cup", "focus on thermometer",
         "focus on cup", "focus on water", "use thermometer on water", "use thermometer on cup", "look around")


def state_at(step, env="scienceworld", variation=0, observation="obs", valid=VALID):
    return AgentState("task", f"{observation} {step}", valid, history=tuple((a, "ok") for a in GOLD[:step]),
                      step=step, gold_path=GOLD, env=env, task="use-thermometer", variation=variation)


def stand_in_ctx(seed=0):
    return EvalContext(device=ProbedAgent(PerturbedGoldDevice(seed=seed)), cloud=ProbedAgent(GoldPathOracle()))


class NamedEnv:
    def __init__(self, name):
        self.name = name


def test_limits_are_registered_and_labelled_stand_in():
    for name in LIMIT_BASELINES:
        assert name in BASELINES
    for module in (bayes, bayes_harm):
        assert "STAND-IN" in module.TITLE and callable(module.chooser) and module.KNOB


def test_bayes_routes_by_the_error_model_probability():
    np.testing.assert_array_equal(bayes.decide(np.array([0.05, 0.3, 0.7]), 0.3), [False, True, True])
    device = PerturbedGoldDevice()
    # gold verbs: navigation (easy 0.05), pick up (medium 0.3), focus (hard 0.7), each + 0.01 per step
    expected = [0.05, 0.31, 0.72, 0.73]
    got = [bayes.device_error_probability(state_at(k), device) for k in range(4)]
    np.testing.assert_allclose(got, expected)
    choose = bayes.chooser(0.5, stand_in_ctx())
    assert [choose(state_at(k), "t", 0).actor for k in range(4)] == ["device", "device", "cloud", "cloud"]
    assert choose(state_at(2), "t", 0).p_cloud == 0.72
    past_end = AgentState("task", "done", VALID, history=tuple((a, "ok") for a in GOLD), step=4, gold_path=GOLD)
    assert bayes.device_error_probability(past_end, device) == 0.0


def test_bayes_reads_the_error_model_not_the_dice():
    # the device's dice depend on its seed and the state; the bayes decision does not, the oracle's does
    states = [state_at(k, observation=f"o{i}") for i in range(40) for k in (1, 2)]
    decisions = {seed: [bayes.chooser(0.5, stand_in_ctx(seed))(s, "t", 0).actor for s in states] for seed in (0, 1)}
    assert decisions[0] == decisions[1]
    oracle_by_seed = {seed: [oracle.chooser(None, stand_in_ctx(seed))(s, "t", 0).actor for s in states]
                      for seed in (0, 1)}
    assert oracle_by_seed[0] != oracle_by_seed[1]


def test_limits_are_unavailable_without_the_stand_in_device():
    class LLMDevice:
        name, is_stand_in = "llm", False

        def act(self, state):
            raise AssertionError("not called")

    ctx = EvalContext(device=ProbedAgent(LLMDevice()), cloud=ProbedAgent(GoldPathOracle()))
    assert "stand-in device" in bayes.unavailable(ctx) and "stand-in device" in bayes_harm.unavailable(ctx)
    assert bayes.unavailable(stand_in_ctx()) is None and bayes_harm.unavailable(stand_in_ctx()) is None
    unknown_env = stand_in_ctx()
    unknown_env.signals = NamedEnv("webshop")
    assert "no unrecoverability rule" in bayes_harm.unavailable(unknown_env)


def test_mistake_pool_is_where_the_stand_in_device_draws_its_mistakes():
    for gold, valid in ((GOLD[2], VALID), ("open door", ("look around", "go to kitchen")), ("look around", ())):
        pool = bayes_harm.mistake_pool(gold, valid)
        drawn = {PerturbedGoldDevice._mistake(gold, valid, ("k", i)) for i in range(300)}
        assert drawn == set(pool)
    assert bayes_harm.mistake_pool(GOLD[2], VALID) == ("focus on cup", "focus on water")


def test_unrecoverable_probability_averages_the_measured_rates_over_the_pool():
    focus, go = 8 / 9, 13 / 20
    assert bayes_harm.unrecoverable_probability("scienceworld", ("focus on cup", "focus on water")) == focus
    np.testing.assert_allclose(
        bayes_harm.unrecoverable_probability("scienceworld", ("go to hallway", "pick up cup", "wait")),
        (go + 0.0 + 0.0) / 3)
    assert bayes_harm.unrecoverable_probability("textworld_express:twc", ("open wardrobe",)) == 0.0
    assert bayes_harm.action_verb("Put down cup") == "put down" and bayes_harm.action_verb("put cup in box") == "put"


def test_bayes_harm_routes_likely_and_unrecoverable_errors_only():
    np.testing.assert_array_equal(
        bayes_harm.decide(np.array([0.7, 0.7, 0.05]), np.array([0.9, 0.0, 1.0]), 0.25), [True, False, False])
    device = PerturbedGoldDevice()
    # step 1: gold "pick up thermometer" (p 0.31) but a wrong pick-up is recoverable -> device, even at a low bar;
    # step 2: gold "focus on thermometer" (p 0.72), a wrong focus ends the episode -> cloud
    p_error, p_unrecoverable = bayes_harm.expected_harm_inputs(state_at(1), device)
    assert (p_error, p_unrecoverable) == (0.31, 0.0)
    p_error, p_unrecoverable = bayes_harm.expected_harm_inputs(state_at(2), device)
    np.testing.assert_allclose([p_error, p_unrecoverable], [0.72, 8 / 9])
    choose = bayes_harm.chooser(0.1, stand_in_ctx())
    assert [choose(state_at(k), "t", 0).actor for k in range(4)] == ["device", "device", "cloud", "device"]
    np.testing.assert_allclose(choose(state_at(2), "t", 0).p_cloud, 0.72 * 8 / 9)
    # bayes at the same cloud bar sends the recoverable pick-up too
    assert bayes.chooser(0.3, stand_in_ctx())(state_at(1), "t", 0).actor == "cloud"



def test_probe_reproduces_the_twc_rule_on_the_real_simulator():
    """hera_jax.research.probe_app on one TWC variation: a misplaced object dooms the episode under the
    gold-path stand-in cloud, a wrongly opened container does not (the rule's evidence, rerun small)."""
    pytest.importorskip("textworld_express")
    from hera_jax.research import probe_app as probe

    result = probe.probe_mistakes(probe.ProbeConfig(env="textworld_express:twc", tasks=("twc-medium",), variations=1))
    by_verb = result["by_verb"]
    assert by_verb["put"]["probes"] >= 3 and by_verb["put"]["failed"] >= by_verb["put"]["probes"] - 1
    assert by_verb["open"]["probes"] >= 1 and by_verb["open"]["failed"] == 0
