"""Device max-probability threshold: the cloud acts when the scoring device's chosen action has a softmax
probability (over the valid actions) below the knob. Needs a device that ranks every valid action
(`--agents.device gguf-score`)."""

from __future__ import annotations

from hera_jax.evaluate.baselines.device_confidence import signal_chooser, signal_unavailable

KNOB = "min p(top action)"
KNOB_FIELD = 'confidence_min_p_top'  # the EvalConfig field holding this baseline's knob values
TITLE = "device max-probability"
SIGNAL = "p_top"


def chooser(min_p_top: float, ctx, method: str = "device_p_top"):
    return signal_chooser(SIGNAL, min_p_top, ctx, "device-p-top")


def unavailable(ctx) -> str | None:
    return signal_unavailable(SIGNAL, ctx)
