"""Device-confidence threshold: the device proposes; the cloud acts when the device is unsure.

Unsure = the proposed action's log-probability is below `min_logprob`, the mean next-token entropy is above
`max_entropy`, or the reply could not be parsed into a valid action. Needs a backend that reports these (the GGUF
and transformers device agents do); the stand-in device reports none, so for it this baseline is unavailable.
"""

from __future__ import annotations

import math

import numpy as np

from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import NON_NEGATIVE
from hera_jax.rollout.episode import Choice, Chooser

KNOB = "min logprob"
# the values swept, one frontier point each (evaluate.py --confidence-min-logprob)
VALUES = Knob(
    "confidence_min_logprob", (-4.0, -2.0, -1.0, -0.5),
    "Device-confidence baseline: escalate when the device's action log-probability is below this.",
)
# fixed settings, read by the chooser from ctx.options
OPTIONS = (Knob("confidence_max_entropy", math.inf,
                "Device-confidence baseline: also escalate when the mean next-token entropy is above this.",
                NON_NEGATIVE),)
TITLE = "device confidence"


def escalate(
    logprob: np.ndarray, entropy: np.ndarray, parse_ok: np.ndarray, min_logprob: float, max_entropy: float = np.inf
) -> np.ndarray:
    """bool[N]. Missing signals are NaN (parse_ok as 1.0 / 0.0 / NaN) and never trigger escalation by themselves."""
    logprob, entropy, parse_ok = (np.asarray(a, np.float64) for a in (logprob, entropy, parse_ok))
    # NaN comparisons are False, so an absent signal cannot make the device look unsure
    return (logprob < min_logprob) | (entropy > max_entropy) | (parse_ok == 0.0)


def _as_float(value) -> float:
    return np.nan if value is None else float(value)


def chooser(min_logprob: float, ctx, method: str = "device_confidence") -> Chooser:
    max_entropy = float(ctx.options.get("confidence_max_entropy", np.inf))

    def choose(state, text, cloud_calls) -> Choice:
        proposal = ctx.device.act(state)  # remembered by ProbedAgent, so the device acts with this same answer
        unsure = escalate(
            np.array([_as_float(proposal.logprob)]),
            np.array([_as_float(proposal.entropy)]),
            np.array([_as_float(proposal.parse_ok)]),
            min_logprob,
            max_entropy,
        )[0]
        return Choice("cloud" if unsure else "device", "device-confidence")

    return choose


def unavailable(ctx) -> str | None:
    if ctx.device.is_stand_in:
        return "the stand-in device reports no logprob, entropy or parse failures"
    return None


def below(values: np.ndarray, minimum: float) -> np.ndarray:
    """bool[N]: escalate where the signal is below `minimum`; a missing signal (NaN) never escalates."""
    return np.asarray(values, np.float64) < minimum


def signal_chooser(signal: str, minimum: float, ctx, reason: str) -> Chooser:
    """Cloud where the device's own proposal reports `signal` (an `AgentStep` field) below `minimum`."""

    def choose(state, text, cloud_calls) -> Choice:
        proposal = ctx.device.act(state)  # remembered by ProbedAgent: the device then acts with this answer
        unsure = below(np.array([_as_float(getattr(proposal, signal))]), minimum)[0]
        return Choice("cloud" if unsure else "device", reason)

    return choose


def signal_unavailable(signal: str, ctx) -> str | None:
    if ctx.device.is_stand_in:
        return f"the stand-in device reports no {signal}"
    if signal not in getattr(ctx.device, "confidence_signals", ()):
        return f"device {ctx.device.name} reports no {signal} (a scoring device does: --agents.device gguf-score)"
    return None
