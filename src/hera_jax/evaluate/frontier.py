"""Frontier arithmetic as pure array functions: per-point metrics, Pareto sets, area under the frontier, budgets.

Everything here takes arrays and returns arrays; files, agents and plots live in the callers.
Conventions: x = cloud-step ratio in [0, 1] (cost), y = success rate or mean score (value).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def aggregate_points(
    point: jax.Array,
    success: jax.Array,
    score: jax.Array,
    steps: jax.Array,
    cloud_steps: jax.Array,
    cloud_tokens: jax.Array,
    cost: jax.Array,
    num_points: int,
) -> dict[str, jax.Array]:
    """Per-point metrics from per-episode arrays, `point[e]` naming the point episode e belongs to.

    The cloud-step ratio is pooled (cloud steps / all steps over the point's episodes), so it is the share of
    agent calls that went to the cloud, which is what a budget pays for; the others are per-episode means.
    """
    def total(values):
        return jax.ops.segment_sum(jnp.asarray(values, jnp.float32), point, num_segments=num_points)

    episodes = total(jnp.ones_like(point, jnp.float32))
    per_episode = jnp.maximum(episodes, 1.0)
    success_rate = total(success) / per_episode
    return {
        "episodes": episodes,
        "success_rate": success_rate,
        # binomial standard error: with tens of episodes per point, differences below ~2 s.e. are noise
        "success_se": jnp.sqrt(success_rate * (1 - success_rate) / per_episode),
        "mean_score": total(score) / per_episode,
        "cloud_step_ratio": total(cloud_steps) / jnp.maximum(total(steps), 1.0),
        "steps_per_episode": total(steps) / per_episode,
        "cloud_calls_per_episode": total(cloud_steps) / per_episode,
        "cloud_tokens_per_episode": total(cloud_tokens) / per_episode,
        "cost_per_episode": total(cost) / per_episode,
    }


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bool[..., K]: True where no other point on the last axis is at most as costly and at least as good, and
    strictly better in one. Exact duplicates are both kept (neither strictly dominates the other); non-finite points
    are never on the front and dominate nothing (NaN comparisons are False)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    valid = np.isfinite(x) & np.isfinite(y)
    # [..., i, j]: j is no worse than i
    no_worse = (x[..., None, :] <= x[..., :, None]) & (y[..., None, :] >= y[..., :, None]) & valid[..., None, :]
    better = (x[..., None, :] < x[..., :, None]) | (y[..., None, :] > y[..., :, None])
    return valid & ~np.any(no_worse & better, axis=-1)


def frontier_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float[...]: area under the Pareto frontier of the K points on the last axis, over cloud-step ratio [0, 1].

    Batched over leading axes (bootstrap replicates, methods). Non-finite points are ignored; NaN where none is
    left. Frontier points are joined linearly (mixing two policies episode by episode reaches every point between
    them) and the curve is held flat beyond its outermost points.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    front = pareto_mask(x, y)
    # frontier points first, by clipped ratio then value; the others go last and are then moved onto the curve's
    # flat right end (x = 1, y = last frontier value), where their trapezoids add nothing
    fx = np.where(front, np.clip(x, 0.0, 1.0), np.inf)
    fy = np.where(front, y, np.inf)
    order = np.lexsort((fy, fx), axis=-1)
    fx, fy = np.take_along_axis(fx, order, -1), np.take_along_axis(fy, order, -1)
    num_front = front.sum(-1)
    last = np.take_along_axis(fy, np.maximum(num_front - 1, 0)[..., None], -1)
    last = np.where(num_front[..., None] > 0, last, 0.0)  # no frontier: area is NaN below; keep the sums finite
    fx = np.where(np.isfinite(fx), fx, 1.0)
    fy = np.where(np.isfinite(fy), fy, last)
    fx = np.concatenate([np.zeros_like(last), fx, np.ones_like(last)], -1)
    fy = np.concatenate([fy[..., :1], fy, last], -1)
    area = np.sum(np.diff(fx, axis=-1) * (fy[..., 1:] + fy[..., :-1]) / 2, axis=-1)
    return np.where(num_front > 0, area, np.nan)


def frontier_auc(x: np.ndarray, y: np.ndarray, anchors: tuple[tuple[float, float], ...] = ()) -> float:
    """Area under one method's Pareto frontier (`frontier_area`) over cloud-step ratio [0, 1].

    `anchors` are extra points every method can reach (device-only at 0, cloud-only at 1); with them every method's
    curve spans [0, 1] and areas are comparable.
    """
    xs = np.concatenate([np.asarray(x, np.float64), [a[0] for a in anchors]])
    ys = np.concatenate([np.asarray(y, np.float64), [a[1] for a in anchors]])
    return float(frontier_area(xs, ys))


def pick_for_budget(ratio: np.ndarray, value: np.ndarray, budget: float, tolerance: float = 1e-9) -> tuple[int, bool]:
    """Index of the best point whose cloud-step ratio is within `budget`, and whether any point was.

    Best = highest value, ties to the lower ratio. With no point inside the budget, the cheapest point is returned
    with `False`, so callers can say the budget was not met.
    """
    ratio, value = np.asarray(ratio, np.float64), np.asarray(value, np.float64)
    feasible = ratio <= budget + tolerance
    if not feasible.any():
        return int(np.argmin(ratio)), False
    # lexsort: last key is primary -> sort by value desc, then ratio asc, among feasible points
    candidates = np.flatnonzero(feasible)
    best = np.lexsort((ratio[candidates], -value[candidates]))[0]
    return int(candidates[best]), True


def retained(value: np.ndarray, cloud_only_value: float) -> np.ndarray:
    """Share of the cloud-only result a point keeps (the paper's "% of cloud-only success"); NaN if that is 0."""
    value = np.asarray(value, np.float64)
    return value / cloud_only_value if cloud_only_value > 0 else np.full_like(value, np.nan)
