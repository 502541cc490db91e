import dataclasses

import jax
import numpy as np

from hera_jax.agents.base import AgentStep
from hera_jax.evaluate.baselines import BASELINES, device_confidence, oracle, random_steps, router, swiftsage, task_level
from hera_jax.evaluate.context import EvalContext, ProbedAgent
from hera_jax.state import AgentState


@dataclasses.dataclass
class ScriptedAgent:
    """Answers from a table keyed by step; counts calls."""

    steps: dict
    is_stand_in: bool = False
    name: str = "scripted"
    calls: int = 0

    def act(self, state):
        self.calls += 1
        return self.steps[state.step]

    def describe(self):
        return {"name": self.name, "kind": "stand-in" if self.is_stand_in else "llm"}


def state(step=0, task="t", variation=0, history=()):
    return AgentState("task", f"obs {step}", ("a", "b"), history=history, step=step, task=task, variation=variation)


def ctx_with(device_steps=None, cloud_steps=None, **kwargs):
    device = ProbedAgent(ScriptedAgent(device_steps or {}))
    cloud = ProbedAgent(ScriptedAgent(cloud_steps or {}))
    return EvalContext(device=device, cloud=cloud, **kwargs)


def test_registry_modules_share_one_interface():
    for module in BASELINES.values():
        assert callable(module.chooser) and callable(module.unavailable) and module.KNOB and module.TITLE


def test_random_decision_and_chooser_rate():
    np.testing.assert_array_equal(random_steps.decide(np.array([0.1, 0.5, 0.9]), 0.5), [True, False, False])
    ctx = ctx_with(seed=3)
    choose = random_steps.chooser(0.3, ctx)
    actors = [choose(state(step=i), f"text {i}", 0).actor for i in range(2000)]
    assert abs(np.mean([a == "cloud" for a in actors]) - 0.3) < 0.04
    again = [random_steps.chooser(0.3, ctx)(state(step=i), f"text {i}", 0).actor for i in range(50)]
    assert again == actors[:50]  # seeded by state, not by call order


def test_router_decision_is_threshold_rule():
    np.testing.assert_array_equal(router.decide(np.array([0.2, 0.5, 0.7]), 0.5), [False, True, True])
    ctx = ctx_with(routers={"il": lambda s, text, calls: 0.6})
    assert router.chooser(0.5, ctx, "il")(state(), "x", 0).actor == "cloud"
    assert router.chooser(0.7, ctx, "il")(state(), "x", 0).actor == "device"


def test_task_level_fit_threshold_and_one_decision_per_episode():
    x = jax.random.normal(jax.random.key(0), (200, 5))
    y = x @ np.array([0.5, -1.0, 0.0, 2.0, 0.1]) + 0.3
    w, b = task_level.fit(x, y, l2=1e-4)
    np.testing.assert_allclose(w, [0.5, -1.0, 0.0, 2.0, 0.1], atol=1e-3)
    np.testing.assert_allclose(b, 0.3, atol=1e-3)

    scores = np.linspace(0, 1, 101)
    for share in (0.0, 0.25, 0.6, 1.0):
        sent = task_level.decide(scores, task_level.threshold_for_share(scores, share)).mean()
        np.testing.assert_allclose(sent, share, atol=0.011)

    targets = task_level.episode_targets(np.array([0, 0, 1, 1, 1]), np.array([1, 0, 1, 1, 1]), 2)
    np.testing.assert_allclose(targets, [0.5, 1.0])

    # the first state's text decides the whole episode; later states do not change it
    embed = lambda texts: np.array([[1.0 if "hard" in t else 0.0] for t in texts], np.float32)
    router_ = task_level.TaskRouter(params=(np.array([1.0]), 0.0), train_scores=np.array([0.0, 0.0, 1.0, 1.0]), embed=embed)
    choose = task_level.chooser(0.5, ctx_with(task_router=router_))
    assert choose(state(0, variation=1), "hard task", 0).actor == "cloud"
    assert choose(state(1, variation=1), "easy now", 1).actor == "cloud"
    assert choose(state(0, variation=2), "easy task", 0).actor == "device"
    assert choose(state(1, variation=2), "hard now", 0).actor == "device"


def test_device_confidence_escalation_logic():
    nan = np.nan
    unsure = device_confidence.escalate(
        logprob=np.array([-0.1, -3.0, nan, nan, -0.1, nan]),
        entropy=np.array([0.2, 0.2, nan, 5.0, 0.2, nan]),
        parse_ok=np.array([1.0, 1.0, nan, 1.0, 0.0, 1.0]),
        min_logprob=-1.0,
        max_entropy=2.0,
    )
    np.testing.assert_array_equal(unsure, [False, True, False, True, True, False])


def test_device_confidence_chooser_uses_the_same_device_call_and_is_unavailable_for_stand_ins():
    ctx = ctx_with(device_steps={0: AgentStep("a", logprob=-2.5), 1: AgentStep("b", logprob=-0.2)})
    choose = device_confidence.chooser(-1.0, ctx)
    s0, s1 = state(0), state(1)
    assert choose(s0, "x", 0).actor == "cloud"
    assert choose(s1, "y", 0).actor == "device"
    assert ctx.device.act(s1).action == "b" and ctx.device.agent.calls == 2  # the rollout's call is remembered
    assert device_confidence.unavailable(ctx) is None
    stand_in = EvalContext(device=ProbedAgent(ScriptedAgent({}, is_stand_in=True)), cloud=ctx.cloud)
    assert "stand-in" in device_confidence.unavailable(stand_in)
    # its fixed option, under its flag's name in ctx.options (evaluate.py passes every baseline option there)
    confident_but_diffuse = {0: AgentStep("a", logprob=-0.1, entropy=3.0)}
    assert device_confidence.chooser(-1.0, ctx_with(device_steps=confident_but_diffuse))(s0, "x", 0).actor == "device"
    ctx = ctx_with(device_steps=confident_but_diffuse, options={"confidence_max_entropy": 2.0})
    assert device_confidence.chooser(-1.0, ctx)(s0, "x", 0).actor == "cloud"


def test_swiftsage_stall_and_invalid_action():
    rewards = np.array([[0, 5, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    lengths = np.array([5, 2, 1, 0])
    np.testing.assert_array_equal(swiftsage.steps_since_reward(rewards, lengths), [3, 2, 0, 0])
    np.testing.assert_array_equal(
        swiftsage.escalate(rewards, lengths, np.array([False, False, False, True]), k=2), [True, True, False, True]
    )
    assert swiftsage.is_invalid("No known action matches that input.")
    assert not swiftsage.is_invalid("You move to the kitchen.")

    class Signals:
        def __init__(self, r):
            self.r = r

        def reward_history(self):
            return np.asarray(self.r, np.float32)

    ctx = ctx_with(signals=Signals([3.0, 0.0]))
    assert swiftsage.chooser(2, ctx)(state(2), "x", 0).actor == "device"
    assert swiftsage.chooser(1, ctx)(state(2), "x", 0).actor == "cloud"
    invalid = state(2, history=(("xyzzy", "No known action matches that input."),))
    assert swiftsage.chooser(5, ctx)(invalid, "x", 0).actor == "cloud"


def test_oracle_routes_exactly_where_device_and_cloud_disagree():
    np.testing.assert_array_equal(oracle.decide(["Go to Kitchen", "open door"], ["go  to kitchen", "look"]), [False, True])
    ctx = ctx_with(device_steps={0: AgentStep("go north"), 1: AgentStep("take key")},
                   cloud_steps={0: AgentStep("Go North"), 1: AgentStep("open box")})
    choose = oracle.chooser(None, ctx)
    assert [choose(state(i), "x", 0).actor for i in (0, 1)] == ["device", "cloud"]


def test_every_baseline_knob_is_an_evaluate_flag_with_its_default_help_and_range():
    import dataclasses

    import pytest
    import tyro

    from hera_jax.evaluate.baselines import BASELINES, baseline_knobs
    from hera_jax.evaluate.evaluate_app import EvalConfig
    from hera_jax.limits import ConfigError, validate

    fields = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    for name, module in BASELINES.items():
        if module.VALUES is not None:  # a tuple of knob values, each a number, offered as the config's field
            assert fields[module.VALUES.field] == module.VALUES.default, name
            assert all(isinstance(k, (int, float)) for k in module.VALUES.default), name
    assert len({k.field for k in baseline_knobs()}) == len(baseline_knobs())  # no two baselines share a flag
    parsed = tyro.cli(EvalConfig, args=["--random-rates", "0.1", "0.2", "--swiftsage-k", "2", "--confidence-max-entropy", "3"])
    assert (parsed.random_rates, parsed.swiftsage_k, parsed.confidence_max_entropy) == ((0.1, 0.2), (2,), 3.0)
    with pytest.raises(ConfigError, match="--confidence-min-margin must be <= 1"):
        validate(dataclasses.replace(parsed, confidence_min_margin=(0.5, 1.5)))
