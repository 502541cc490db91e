"""Bayes limit (STAND-IN only): the cloud acts where the stand-in device's own error model says it is likely wrong.

It reads `PerturbedGoldDevice.error_probability(gold action, step)`, the probability the stand-in device errs at
this state (its error MODEL, not its dice: the oracle knows the dice). With a threshold on it, this is the best any
router can do that estimates "will the device be wrong here" perfectly and knows nothing else; a learned router's
frontier area as a share of this one's says how much of the gap to the oracle is the router. Only defined for the
stand-in device, whose error model is known; every output labels it so.
"""

from __future__ import annotations

import numpy as np

from hera_jax.agents.stand_ins import PerturbedGoldDevice, reference_action
from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY
from hera_jax.rollout.episode import Choice, Chooser
from hera_jax.state import AgentState

KNOB = "p(device error) threshold"
# the values swept, one frontier point each (evaluate.py --bayes-thresholds)
VALUES = Knob(
    "bayes_thresholds", (0.25, 0.5, 0.75),
    "STAND-IN limit `bayes`: cloud where the stand-in device's error probability is at least this.",
    PROBABILITY,
)
TITLE = "bayes (STAND-IN limit: error model)"


def decide(p_error: np.ndarray, threshold: float) -> np.ndarray:
    """bool[N]: cloud where the device's error probability reaches the threshold."""
    return np.asarray(p_error) >= threshold


def error_model(ctx) -> PerturbedGoldDevice | None:
    """The stand-in device behind the evaluation's (probed) device agent, if it is one."""
    agent = getattr(ctx.device, "agent", ctx.device)
    return agent if isinstance(agent, PerturbedGoldDevice) else None


def device_error_probability(state: AgentState, device: PerturbedGoldDevice) -> float:
    """p(the stand-in device's action differs from the reference action: the gold path's or the environment's
    expert's) at this state; 0 past the gold path's end, where cloud and device both say the same fallback action."""
    gold = reference_action(state)
    return 0.0 if gold is None else device.error_probability(gold, state.step)


def chooser(threshold: float, ctx, method: str = "bayes") -> Chooser:
    device = error_model(ctx)

    def choose(state, text, cloud_calls) -> Choice:
        p_error = device_error_probability(state, device)
        return Choice("cloud" if decide(np.array([p_error]), threshold)[0] else "device", "bayes", p_error)

    return choose


def unavailable(ctx) -> str | None:
    if error_model(ctx) is None:
        return "needs the stand-in device (perturbed), whose error model is known"
    return None
