"""The RL stage's label rule: per group of identical states, which routing choice is preferred, and by how much.

`group_preferences` compares, per group, the visits that routed to the cloud with those that stayed on the device:
- 'linear' (Hera's rule): S_c = mean return - cost_weight * mean future cloud calls; the higher score wins.
- 'lexicographic': the higher mean return wins; where the returns are within `return_tolerance` of each other,
  fewer mean future cloud calls wins. So no price of a call has to be chosen to trade success against cost.
Ties go to the device (the cheaper choice). `group_weights` turns the groups into loss weights: by margin (Hera),
uniform over valid groups, or class-balanced (both labels carry the same total weight).

Rules and weightings are chosen by name on the host, or by their index (LABEL_RULES / GROUP_WEIGHTINGS) as a traced
int, so `jax.vmap` can train every variant at once (hera_jax/sweep.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

LABEL_RULES = ("linear", "lexicographic")
GROUP_WEIGHTINGS = ("margin", "uniform", "class_balanced")


def option_index(value: str | int | jax.Array, names: tuple[str, ...], what: str) -> jax.Array:
    """int32 index of a named option (a name is checked here; an index may be traced and is taken as given)."""
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"{what} must be one of {names}, got {value!r}")
        return jnp.int32(names.index(value))
    return jnp.asarray(value, jnp.int32)


class GroupPreferences(NamedTuple):
    """Per group of identical states (G groups)."""

    prefer_cloud: jax.Array  # int8[G] 1 = the cloud is the preferred choice; 0 = the device (also invalid groups)
    margin: jax.Array  # float[G] how clearly the preferred choice wins (units of return); 0 for invalid groups
    valid: jax.Array  # bool[G] both choices were visited, so the group could be labelled


def group_preferences(
    group_ids: jax.Array,
    chose_cloud: jax.Array,
    returns: jax.Array,
    future_cloud_calls: jax.Array,
    num_groups: int,
    cost_weight: float | jax.Array,
    label_rule: str | int | jax.Array = "linear",
    return_tolerance: float | jax.Array = 0.0,
) -> GroupPreferences:
    """Cost-aware preference per group of identical states (Hera stage 2).

    Inputs are per visit: int[N] group in 0..num_groups-1, bool[N] routed to cloud, float[N] return from that step
    on, float[N] cloud calls from that step to the episode's end (this step included). Per group and choice
    c in {device, cloud}: R_c mean return, K_c mean future cloud calls over the visits that chose c.

    'linear': prefer cloud iff R_cloud - w K_cloud > R_device - w K_device (w = cost_weight); margin = |difference|.
    'lexicographic': if |R_cloud - R_device| > return_tolerance, prefer the higher return, margin |R_cloud -
    R_device|; otherwise prefer cloud iff K_cloud < K_device, margin w |K_cloud - K_device| (the calls' price in
    units of return, so margins of both cases are comparable). Ties prefer the device; invalid groups (a choice
    never visited) have label 0 and margin 0. `num_groups` must be static under `jax.jit`; everything else may be
    traced (vmap over cost weights, rules, tolerances).
    """
    group_ids = jnp.asarray(group_ids, jnp.int32)
    cloud = jnp.asarray(chose_cloud, bool)
    returns = jnp.asarray(returns, jnp.float32)
    future_cloud_calls = jnp.asarray(future_cloud_calls, jnp.float32)
    rule = option_index(label_rule, LABEL_RULES, "label_rule")

    def choice_means(mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        w = mask.astype(jnp.float32)
        count = jax.ops.segment_sum(w, group_ids, num_groups)
        mean_return = jax.ops.segment_sum(w * returns, group_ids, num_groups) / jnp.maximum(count, 1.0)
        mean_calls = jax.ops.segment_sum(w * future_cloud_calls, group_ids, num_groups) / jnp.maximum(count, 1.0)
        return mean_return, mean_calls, count > 0

    return_cloud, calls_cloud, seen_cloud = choice_means(cloud)
    return_device, calls_device, seen_device = choice_means(~cloud)
    valid = seen_cloud & seen_device
    # linear: the score difference (strict >: a tie keeps the cheaper device)
    score_diff = (return_cloud - cost_weight * calls_cloud) - (return_device - cost_weight * calls_device)
    linear_cloud, linear_margin = score_diff > 0, jnp.abs(score_diff)
    # lexicographic: the return decides unless within the tolerance, then the calls
    return_diff, calls_diff = return_cloud - return_device, calls_cloud - calls_device
    return_decides = jnp.abs(return_diff) > return_tolerance
    lexicographic_cloud = jnp.where(return_decides, return_diff > 0, calls_diff < 0)
    lexicographic_margin = jnp.where(return_decides, jnp.abs(return_diff), cost_weight * jnp.abs(calls_diff))
    is_linear = rule == LABEL_RULES.index("linear")
    prefer_cloud = jnp.where(is_linear, linear_cloud, lexicographic_cloud)
    margin = jnp.where(is_linear, linear_margin, lexicographic_margin)
    return GroupPreferences(
        prefer_cloud=(valid & prefer_cloud).astype(jnp.int8),
        margin=jnp.where(valid, margin, 0.0),
        valid=valid,
    )


def group_weights(preferences: GroupPreferences, weighting: str | int | jax.Array = "margin") -> jax.Array:
    """float[G] unnormalised weight of each group in the RL loss (0 for invalid groups).

    'margin' (Hera): the margin, so clear preferences count more and ties not at all; 'uniform': 1 per valid group;
    'class_balanced': 1 / (valid groups with the same label), so "prefer cloud" and "prefer device" groups carry the
    same total weight however rare one of them is. The loss normalises by the sum (rl/loss.py).
    """
    kind = option_index(weighting, GROUP_WEIGHTINGS, "group_weighting")
    valid = preferences.valid.astype(jnp.float32)
    is_cloud = preferences.prefer_cloud > 0
    cloud_groups = jnp.sum(valid * is_cloud)
    device_groups = jnp.sum(valid * ~is_cloud)
    class_balanced = valid / jnp.maximum(jnp.where(is_cloud, cloud_groups, device_groups), 1.0)
    margin = jnp.where(preferences.valid, preferences.margin, 0.0)
    return jnp.select([kind == 0, kind == 1], [margin, valid], class_balanced)
