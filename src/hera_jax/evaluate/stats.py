"""95 % confidence intervals for evaluation metrics: a bootstrap over episodes, paired across methods.

The resampled unit is an episode unit, one (task, variation) of one eval split. Every point of a split ran on the
same units, so one resample of units is applied to all points at once: the replicates of two methods share their
episodes, and a difference between methods (e.g. frontier areas) gets a paired interval, which is narrower than an
unpaired one when the methods succeed and fail on the same episodes. A resample is held as unit multiplicities
(`weights[..., U]`), so every metric of every replicate is a weighted sum: no loop over episodes or replicates.

Intervals come from `scipy.stats.bootstrap` (BCa); where BCa is undefined (a degenerate bootstrap distribution,
e.g. the difference of a method with itself) the percentile interval of the same replicates is used.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import scipy.stats

from hera_jax.evaluate.frontier import curve_area, curve_value, frontier_curve

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class UnitTable:
    """Per-episode results of one eval split as [U units, P points] arrays (0 where a point has no episode)."""

    success: np.ndarray
    steps: np.ndarray
    cloud_steps: np.ndarray
    present: np.ndarray


@dataclasses.dataclass(frozen=True)
class SplitLayout:
    """Which points make up each method, and the reference points and methods metrics are taken against."""

    method_points: np.ndarray  # int[M, K]: point indices of each method, -1 padded
    device_only: int = -1  # point index, -1 if absent (the frontier's left anchor)
    cloud_only: int = -1  # point index, -1 if absent (right anchor; "% of cloud-only success" divides by it)
    random: int = -1  # method index of random step routing, -1 if absent
    limits: tuple[int, ...] = ()  # method indices of the limit baselines (areas are also given as shares of these)
    budget: float = 0.3  # cloud-step ratio at which each method's frontier value is reported


def resample_counts(indices: np.ndarray, num_units: int) -> np.ndarray:
    """int[N, U]: how often each unit occurs in each of the N resamples `indices[N, n]`."""
    indices = np.asarray(indices, np.int64)
    rows = indices.shape[0]
    offsets = np.arange(rows)[:, None] * num_units
    return np.bincount((indices + offsets).ravel(), minlength=rows * num_units).reshape(rows, num_units)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def split_metrics(weights: np.ndarray, table: UnitTable, layout: SplitLayout) -> dict[str, np.ndarray]:
    """Metrics of one split under unit weights [N, U] (all ones = the data as observed).

    success / cloud_step_ratio / success_retained: [N, P] per point (the ratio pooled over steps, like
    `frontier.aggregate_points`); area: [N, M] under each method's success frontier, anchored at device-only and
    cloud-only; area_minus_random: [N, M]; area_share: [N, M, L] = area / area of limit l; success_at_budget /
    retained_at_budget: [N, M] the frontier's success at cloud-step ratio `layout.budget` (a mix of the method's
    knob values), and that as a share of cloud-only success.
    """
    weights = np.asarray(weights, np.float64)
    success = _ratio(weights @ table.success, weights @ table.present)
    ratio = _ratio(weights @ table.cloud_steps, weights @ table.steps)
    nan_column = np.full((len(weights), 1), np.nan)
    cloud_success = success[:, [layout.cloud_only]] if layout.cloud_only >= 0 else nan_column
    retained = _ratio(success, np.broadcast_to(cloud_success, success.shape))
    # [N, M, K] points of each method plus the two anchors (NaN where padded or absent, which frontier_curve skips)
    padded = layout.method_points >= 0
    take = np.where(padded, layout.method_points, 0)
    method_x = np.where(padded, ratio[:, take], np.nan)
    method_y = np.where(padded, success[:, take], np.nan)
    anchors_x = np.zeros((len(weights), 2))
    anchors_x[:, 1] = 1.0
    anchors_y = np.concatenate([
        success[:, [layout.device_only]] if layout.device_only >= 0 else nan_column, cloud_success], axis=1)
    num_methods = layout.method_points.shape[0]
    frontier_x = np.concatenate([method_x, np.broadcast_to(anchors_x[:, None], (len(weights), num_methods, 2))], -1)
    frontier_y = np.concatenate([method_y, np.broadcast_to(anchors_y[:, None], (len(weights), num_methods, 2))], -1)
    curve = frontier_curve(frontier_x, frontier_y)  # the hull once, for the area and the value at the budget
    area = curve_area(curve)
    success_at_budget = curve_value(curve, layout.budget)
    random_area = area[:, [layout.random]] if layout.random >= 0 else nan_column
    limits = list(layout.limits)
    return {
        "success": success,
        "cloud_step_ratio": ratio,
        "success_retained": retained,
        "area": area,
        "area_minus_random": area - random_area,
        "area_share": _ratio(area[:, :, None], np.broadcast_to(area[:, None, limits], area.shape + (len(limits),))),
        "success_at_budget": success_at_budget,
        "retained_at_budget": _ratio(success_at_budget, np.broadcast_to(cloud_success, success_at_budget.shape)),
    }


@dataclasses.dataclass(frozen=True)
class Intervals:
    """Point estimates and interval ends, each float[S] over the flattened statistics."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def half_width(self) -> np.ndarray:
        return (self.high - self.low) / 2


def bootstrap_intervals(statistic: Callable[[np.ndarray], np.ndarray], num_units: int, *, n_resamples: int = 9999,
                        confidence: float = CONFIDENCE, seed: int = 0) -> Intervals:
    """Intervals of every statistic in `statistic(weights[N, U]) -> values[N, S]`, resampling the U units.

    Seeded: the same data and seed give the same intervals. NaN replicates (a point absent from a resample) are
    left out of the percentile fallback.
    """
    def on_indices(indices, axis=-1):
        indices = np.asarray(indices, np.int64)
        lead = indices.shape[:-1]
        values = statistic(resample_counts(indices.reshape(-1, indices.shape[-1]), num_units))
        return np.moveaxis(values.reshape(*lead, values.shape[-1]), -1, 0)

    estimate = statistic(np.ones((1, num_units)))[0]
    if num_units < 2:
        nan = np.full_like(estimate, np.nan)
        return Intervals(estimate, nan, nan)
    with warnings.catch_warnings():
        # BCa is undefined for degenerate replicates (e.g. a method minus itself); handled below
        warnings.simplefilter("ignore")
        result = scipy.stats.bootstrap((np.arange(num_units),), on_indices, n_resamples=n_resamples,
                                       vectorized=True, confidence_level=confidence, method="BCa",
                                       rng=np.random.default_rng(seed))
        alpha = (1 - confidence) / 2
        percentile = np.nanquantile(result.bootstrap_distribution, [alpha, 1 - alpha], axis=-1)
    low, high = np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)
    undefined = ~(np.isfinite(low) & np.isfinite(high))
    return Intervals(estimate, np.where(undefined, percentile[0], low), np.where(undefined, percentile[1], high))
