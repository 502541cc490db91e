"""Frontier arithmetic as pure array functions: per-point metrics, area under the frontier, budgets.

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


def frontier_curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frontier of the K points on the last axis as a piecewise-linear curve over [0, 1]: knots (fx, fh) of
    K + 2 sorted cloud-step ratios and values (see `frontier_area`), and whether any point was valid. The hull is
    the costly part (O(K^2) per row): callers wanting both the area and a value compute it once and pass it to
    `curve_area` and `curve_value`."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    valid = np.isfinite(x) & np.isfinite(y)
    x = np.where(valid, np.clip(x, 0.0, 1.0), 2.0)  # invalid points: beyond the axis, never usable
    y = np.where(valid, y, 0.0)
    # hull value at each point: the best mix of a point left of it (i) and one right of it (j). K is a handful of
    # knob values, so the loop over (k, i) is short; each step is vectorised over the batch and j.
    num = x.shape[-1]
    hull = np.full(x.shape, -np.inf)
    for k in range(num):
        xk = x[..., k, None]
        for i in range(num):
            xi, yi = x[..., i, None], y[..., i, None]
            span = x - xi
            mixed = np.where(span > 0, yi + (y - yi) * (xk - xi) / np.where(span > 0, span, 1.0), np.maximum(yi, y))
            usable = valid[..., i, None] & valid & (xi <= xk) & (x >= xk)
            hull[..., k] = np.maximum(hull[..., k], np.max(np.where(usable, mixed, -np.inf), axis=-1))
    order = np.argsort(x, axis=-1)  # invalid points (x = 2) last
    fx, fh = np.take_along_axis(x, order, -1), np.take_along_axis(hull, order, -1)
    fh = np.maximum.accumulate(fh, axis=-1)  # spending less is allowed: the curve never falls
    fh = np.where(np.isfinite(fh), fh, 0.0)  # keeps the sums finite where nothing is valid (NaN in callers)
    fx = np.minimum(fx, 1.0)  # invalid points sit at x = 1 with the last value: zero width
    fx = np.concatenate([np.zeros_like(fx[..., :1]), fx, np.ones_like(fx[..., :1])], -1)
    fh = np.concatenate([fh[..., :1], fh, fh[..., -1:]], -1)
    return fx, fh, valid.any(-1)


def curve_area(curve: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """float[...]: area under a `frontier_curve`; NaN where no point was valid."""
    fx, fh, any_valid = curve
    area = np.sum(np.diff(fx, axis=-1) * (fh[..., 1:] + fh[..., :-1]) / 2, axis=-1)
    return np.where(any_valid, area, np.nan)


def curve_value(curve: tuple[np.ndarray, np.ndarray, np.ndarray], budget: float) -> np.ndarray:
    """float[...]: a `frontier_curve`'s value at cloud-step ratio `budget`; NaN where no point was valid."""
    fx, fh, any_valid = curve
    # the knot segment [fx[j-1], fx[j]] holding the budget (knots are sorted; the first is 0, the last 1)
    j = np.clip(np.sum(fx <= budget, axis=-1, keepdims=True), 1, fx.shape[-1] - 1)
    x0, x1 = np.take_along_axis(fx, j - 1, -1)[..., 0], np.take_along_axis(fx, j, -1)[..., 0]
    y0, y1 = np.take_along_axis(fh, j - 1, -1)[..., 0], np.take_along_axis(fh, j, -1)[..., 0]
    width = x1 - x0
    value = np.where(width > 0, y0 + (y1 - y0) * (budget - x0) / np.where(width > 0, width, 1.0), y1)
    return np.where(any_valid, value, np.nan)


def frontier_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float[...]: area under the frontier of the K points on the last axis, over cloud-step ratio [0, 1].

    Batched over leading axes (bootstrap replicates, methods). Non-finite points are ignored; NaN where none is
    left. The frontier is what mixing the points' policies episode by episode reaches, spending at most a given
    ratio: the upper concave hull of the points, held flat beyond its highest point and left of its cheapest one.
    So a point below a mix of two others changes nothing, and evaluating more knob values never lowers the area
    (joining the Pareto points in order did: a mediocre extra point pulled the curve down).
    """
    return curve_area(frontier_curve(x, y))


def frontier_value(x: np.ndarray, y: np.ndarray, budget: float) -> np.ndarray:
    """float[...]: the frontier's value at cloud-step ratio `budget` (the curve of `frontier_area`, batched the
    same way): the best success a mix of the points' policies reaches spending at most `budget`. NaN where no
    point is valid."""
    return curve_value(frontier_curve(x, y), budget)


def frontier_auc(x: np.ndarray, y: np.ndarray, anchors: tuple[tuple[float, float], ...] = ()) -> float:
    """Area under one method's frontier (`frontier_area`: the concave hull of its points) over cloud-step ratio [0, 1].

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
