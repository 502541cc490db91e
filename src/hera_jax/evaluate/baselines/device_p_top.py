"""Device max-probability threshold: the cloud acts when the scoring device's chosen action has a softmax
probability (over the valid actions) below the knob. Needs a device that ranks every valid action
(`--agents.device gguf-score`)."""

from __future__ import annotations

from hera_jax.evaluate.baselines.device_confidence import signal_chooser, signal_unavailable
from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY

KNOB = "min p(top action)"
# the values swept, one frontier point each (evaluate.py --confidence-min-p-top)
VALUES = Knob(
    "confidence_min_p_top", (0.3, 0.5, 0.7),
    "Device max-probability baseline: escalate when the chosen action's probability over the valid actions is below"
    " this (scoring devices).",
    PROBABILITY,
)
TITLE = "device max-probability"
SIGNAL = "p_top"


def chooser(min_p_top: float, ctx, method: str = "device_p_top"):
    return signal_chooser(SIGNAL, min_p_top, ctx, "device-p-top")


def unavailable(ctx) -> str | None:
    return signal_unavailable(SIGNAL, ctx)
