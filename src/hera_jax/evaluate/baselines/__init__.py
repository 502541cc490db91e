"""Routing methods compared on the frontier, by name: `--baselines random task_level swiftsage ...`.

Each is a small module with one entry point, `chooser(param, ctx, method) -> Chooser`, a pure decision function the
tests exercise on constructed inputs, `KNOB` (what `param` means) and `unavailable(ctx) -> reason | None`.
Trained routers (IL, and RL per iteration) are the `router` method under the names given on the command line.
"""

from __future__ import annotations

from types import ModuleType

from hera_jax.evaluate.baselines import (
    bayes,
    bayes_harm,
    device_confidence,
    device_margin,
    device_p_top,
    oracle,
    random_steps,
    references,
    router,
    swiftsage,
    task_level,
)

BASELINES: dict[str, ModuleType] = {
    "random": random_steps,
    "task_level": task_level,
    "device_confidence": device_confidence,
    "device_p_top": device_p_top,
    "device_margin": device_margin,
    "swiftsage": swiftsage,
    "oracle": oracle,
    "bayes": bayes,
    "bayes_harm": bayes_harm,
}
# STAND-IN-only upper references: they read the stand-in device's error model (bayes, bayes_harm) or its dice
# (oracle); learned routers' frontier areas are also reported as shares of theirs
LIMIT_BASELINES: tuple[str, ...] = ("bayes", "bayes_harm", "oracle")
METHOD_MODULES: dict[str, ModuleType] = {**BASELINES, "router": router, "reference": references}

__all__ = ["BASELINES", "LIMIT_BASELINES", "METHOD_MODULES"]
