"""Routing methods compared on the frontier, by name: `--baselines random task_level swiftsage ...`.

Each is a small module with one entry point, `chooser(param, ctx, method) -> Chooser`, a pure decision function the
tests exercise on constructed inputs, `KNOB` (what `param` means), `VALUES` (a `Knob`: the values swept, or None for
one point), optional `OPTIONS` (fixed settings) and `unavailable(ctx) -> reason | None`. evaluate.py's flags for
these settings come from the declarations (`with_baseline_knobs`), so adding a baseline touches no config.
Trained routers (IL, and RL per iteration) are the `router` method under the names given on the command line.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Annotated

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
from hera_jax.evaluate.baselines.knob import Knob

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


def baseline_knobs() -> tuple[Knob, ...]:
    """Every baseline's declared settings (swept values, then fixed options), in registry order."""
    return tuple(knob for module in BASELINES.values()
                 for knob in ((module.VALUES,) if module.VALUES is not None else ()) + getattr(module, "OPTIONS", ()))


def _knob_type(default) -> type:
    if isinstance(default, tuple):
        return tuple[int, ...] if all(isinstance(v, int) for v in default) else tuple[float, ...]
    return type(default)


def with_baseline_knobs(config_class: type) -> type:
    """Class decorator: `config_class` (a frozen dataclass) plus one field per baseline knob, each with its help
    text, default and range (added to LIMITS), so the config never lists them by hand."""
    import tyro  # the CLI's own library; only the command's config needs it

    knobs = baseline_knobs()
    fields = [(k.field, Annotated[_knob_type(k.default), tyro.conf.arg(help=k.help)],
               dataclasses.field(default=k.default)) for k in knobs]
    extended = dataclasses.make_dataclass(config_class.__name__, fields, bases=(config_class,), frozen=True)
    # the same name, module and doc as the class it extends (pickling, tyro's description, reprs)
    extended.__module__, extended.__qualname__ = config_class.__module__, config_class.__qualname__
    extended.__doc__ = config_class.__doc__
    extended.LIMITS = {**getattr(config_class, "LIMITS", {}), **{k.field: k.limit for k in knobs if k.limit}}
    return extended


__all__ = ["BASELINES", "LIMIT_BASELINES", "METHOD_MODULES", "Knob", "baseline_knobs", "with_baseline_knobs"]
