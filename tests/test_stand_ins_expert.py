"""The stand-ins around an environment's re-planning expert (ALFWorld): which agents `oracle`/`perturbed` build per
environment, what they follow, and the device's error model."""

from __future__ import annotations

import pytest

from hera_jax.agents import ExpertOracle, GoldPathOracle, PerturbedExpertDevice, PerturbedGoldDevice
from hera_jax.agents.config import AgentsConfig, build_agents
from hera_jax.agents.stand_ins import expert_action_difficulty, reference_action
from hera_jax.evaluate.baselines.bayes import device_error_probability
from hera_jax.state import AgentState

VALID = ("go to countertop 1", "go to fridge 1", "go to sinkbasin 1", "look", "inventory",
         "take apple 1 from countertop 1", "take knife 1 from countertop 1")


def _state(expert_action, step=0, gold_path=("go to countertop 1", "take apple 1 from countertop 1")):
    return AgentState("put a clean apple in fridge.", f"obs {step}", VALID, step=step, gold_path=gold_path,
                      expert_action=expert_action, env="alfworld", task="pick_clean_then_place_in_recep",
                      variation=3)


def test_the_stand_in_names_resolve_per_environment():
    cloud, device = build_agents(AgentsConfig(device_seed=4), "alfworld")
    assert isinstance(cloud, ExpertOracle) and isinstance(device, PerturbedExpertDevice) and device.seed == 4
    assert cloud.is_stand_in and device.is_stand_in and "stand-in" in device.describe()["note"]
    cloud, device = build_agents(AgentsConfig(), "scienceworld")
    assert type(cloud) is GoldPathOracle and type(device) is PerturbedGoldDevice


def test_expert_stand_ins_follow_the_expert_not_the_walkthrough():
    state = _state("go to sinkbasin 1")  # the expert re-planned away from the stored walkthrough
    assert reference_action(state) == "go to sinkbasin 1"
    assert ExpertOracle().act(state).action == "go to sinkbasin 1"
    assert reference_action(_state(None)) == "go to countertop 1"  # no expert: walk the gold path
    with pytest.raises(ValueError, match="re-planning expert"):
        ExpertOracle().act(_state(None))
    with pytest.raises(ValueError, match="re-planning expert"):
        PerturbedExpertDevice().act(_state(None))


def test_perturbed_expert_errs_by_alfworld_step_kind_with_scienceworld_rates():
    device = PerturbedExpertDevice(seed=0)
    rates = {k: getattr(PerturbedGoldDevice(), f"error_{k}") for k in ("easy", "medium", "hard", "per_step")}
    assert {k: getattr(device, f"error_{k}") for k in rates} == rates  # the same rates as ScienceWorld's device
    assert [expert_action_difficulty(a) for a in ("go to fridge 1", "look", "take apple 1 from countertop 1",
                                                  "open fridge 1", "move apple 1 to fridge 1",
                                                  "clean apple 1 with sinkbasin 1", "use desklamp 1")] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "hard"]
    # bayes reads the same model: p(error) of the expert's action at this state
    assert device_error_probability(_state("move apple 1 to fridge 1", step=5), device) == pytest.approx(0.75)
    # a mistake keeps the first two words where it can ("go to" another place), else it is another valid action;
    # the same state always gets the same action
    actions = {device.act(_state("go to fridge 1", step=s)).action for s in range(60)}
    assert actions == {"go to fridge 1", "go to countertop 1", "go to sinkbasin 1"}
    actions = {device.act(_state("take apple 1 from countertop 1", step=s)).action for s in range(40)}
    assert "take apple 1 from countertop 1" in actions and len(actions) > 2 and actions <= set(VALID)
    state = _state("go to fridge 1", step=7)
    assert device.act(state).action == device.act(state).action
