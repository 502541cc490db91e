"""Device margin threshold: the cloud acts when the scoring device's top action leads the second by less than the
knob (in softmax probability over the valid actions). Needs `--agents.device gguf-score`."""

from __future__ import annotations

from hera_jax.evaluate.baselines.device_confidence import signal_chooser, signal_unavailable
from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY

KNOB = "min margin"
# the values swept, one frontier point each (evaluate.py --confidence-min-margin)
VALUES = Knob(
    "confidence_min_margin", (0.1, 0.3, 0.5),
    "Device margin baseline: escalate when the chosen action leads the second by less than this (probability).",
    PROBABILITY,
)
TITLE = "device margin"
SIGNAL = "margin"


def chooser(min_margin: float, ctx, method: str = "device_margin"):
    return signal_chooser(SIGNAL, min_margin, ctx, "device-margin")


def unavailable(ctx) -> str | None:
    return signal_unavailable(SIGNAL, ctx)
