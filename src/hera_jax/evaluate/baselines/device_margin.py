"""Device margin threshold: the cloud acts when the scoring device's top action leads the second by less than the
knob (in softmax probability over the valid actions). Needs `--agents.device gguf-score`."""

from __future__ import annotations

from hera_jax.evaluate.baselines.device_confidence import signal_chooser, signal_unavailable

KNOB = "min margin"
KNOB_FIELD = 'confidence_min_margin'  # the EvalConfig field holding this baseline's knob values
TITLE = "device margin"
SIGNAL = "margin"


def chooser(min_margin: float, ctx, method: str = "device_margin"):
    return signal_chooser(SIGNAL, min_margin, ctx, "device-margin")


def unavailable(ctx) -> str | None:
    return signal_unavailable(SIGNAL, ctx)
