"""Environment registry: `make_env("scienceworld")`, `make_env("textworld_express:twc")`, ...

The part of a name after ':' selects a variant (for TextWorldExpress, the game). Adapters import their simulator
lazily, so a missing package, data set or server surfaces as `EnvUnavailableError` naming the install command.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from hera_jax.envs.base import Env, EnvUnavailableError, Observation, StepResult, TaskVariation, UnknownTaskError


def _no_variant(name: str, variant: str) -> None:
    if variant:
        raise UnknownTaskError(f"environment {name!r} has no variants; use {name!r} without ':{variant}'")


def _scienceworld(variant: str = "", **kwargs: Any) -> Env:
    from hera_jax.envs.scienceworld import ScienceWorld

    _no_variant("scienceworld", variant)
    return ScienceWorld(**kwargs)


def _textworld_express(variant: str = "", **kwargs: Any) -> Env:
    from hera_jax.envs.textworld_express import TextWorldExpress

    return TextWorldExpress(game=variant or "twc", **kwargs)


def _alfworld(variant: str = "", **kwargs: Any) -> Env:
    from hera_jax.envs.alfworld import ALFWorld

    _no_variant("alfworld", variant)
    return ALFWorld(**kwargs)


def _webshop(variant: str = "", **kwargs: Any) -> Env:
    from hera_jax.envs.webshop import WebShop

    # "webshop:http://host:3000" points at another server; plain "webshop" uses the adapter's default URL.
    return WebShop(base_url=variant, **kwargs) if variant else WebShop(**kwargs)


def _appworld(variant: str = "", **kwargs: Any) -> Env:
    from hera_jax.envs.appworld import AppWorldEnv

    _no_variant("appworld", variant)
    return AppWorldEnv(**kwargs)


ENVS: dict[str, Callable[..., Env]] = {
    "scienceworld": _scienceworld,
    "textworld_express": _textworld_express,
    "alfworld": _alfworld,
    "webshop": _webshop,
    "appworld": _appworld,
}


class UnknownEnvError(UnknownTaskError):
    """A registry name that no adapter has (most often a typo)."""


def check_env_name(name: str) -> None:
    """Refuse a name whose base is not in the registry, naming the likely intended one."""
    base = name.partition(":")[0]
    if base not in ENVS:
        close = difflib.get_close_matches(base, list(ENVS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownEnvError(f"unknown environment {name!r}; {hint}available: {', '.join(sorted(ENVS))}")


def make_env(name: str, **kwargs: Any) -> Env:
    """Build an environment by registry name, e.g. "scienceworld" or "textworld_express:cookingworld"."""
    check_env_name(name)
    base, _, variant = name.partition(":")
    return ENVS[base](variant, **kwargs)


# The simulator's own step limit sits above the episode's: the rollout ends episodes itself (max_steps, the gold
# factor); the simulator's limit only stops one that runs away.
SIMULATOR_STEP_MARGIN = 10


def simulator_factory(name: str, max_steps: int, **options: Any):
    """A picklable () -> Env for episodes of at most `max_steps` steps (what every rollout worker builds)."""
    import functools

    return functools.partial(make_env, name, step_limit=max_steps + SIMULATOR_STEP_MARGIN, **options)


__all__ = [
    "ENVS",
    "Env",
    "EnvUnavailableError",
    "Observation",
    "StepResult",
    "TaskVariation",
    "UnknownEnvError",
    "UnknownTaskError",
    "check_env_name",
    "make_env",
    "simulator_factory",
]
