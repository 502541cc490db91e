"""Exploration rate of the RL rollouts per iteration: a pure function of the iteration (RLConfig's schedule)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hera_jax.rl.preferences import option_index

EXPLORATION_SCHEDULES = ("constant", "linear", "exponential")


def exploration_rate(
    iteration: int | jax.Array,
    start: float | jax.Array,
    final: float | jax.Array,
    schedule: str | int | jax.Array = "constant",
    decay_iters: int | jax.Array = 5,
) -> jax.Array:
    """float32 probability of flipping the router's choice in iteration `iteration` (1 = the first RL iteration).

    'constant': `start` always. 'linear' / 'exponential': `start` at iteration 1, `final` at `decay_iters` (and
    after), linear or geometric in between; geometric needs start, final > 0. A decay over a fixed number of
    iterations, not over --iters, keeps a resumed run with more iterations on the rates it already used.
    """
    if schedule == "exponential" and not (isinstance(start, jax.Array) or isinstance(final, jax.Array)) and min(
            float(start), float(final)) <= 0:
        raise ValueError(f"an exponential exploration schedule needs rates > 0, got {start} -> {final}")
    kind = option_index(schedule, EXPLORATION_SCHEDULES, "exploration_schedule")
    start, final = jnp.float32(start), jnp.float32(final)
    # progress in [0, 1]: 0 at iteration 1, 1 from decay_iters on (decay_iters <= 1: the final rate at once)
    span = jnp.maximum(jnp.asarray(decay_iters, jnp.float32) - 1.0, 1.0)
    progress = jnp.clip((jnp.asarray(iteration, jnp.float32) - 1.0) / span, 0.0, 1.0)
    progress = jnp.where(jnp.asarray(decay_iters) <= 1, 1.0, progress)
    linear = start + (final - start) * progress
    exponential = start * (final / start) ** progress
    return jnp.select([kind == 0, kind == 1], [start, linear], exponential)
