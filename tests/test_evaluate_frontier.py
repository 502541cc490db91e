import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.evaluate.frontier import aggregate_points, frontier_auc, pick_for_budget, retained


def test_aggregate_points_matches_direct_formula():
    point = np.array([0, 0, 1, 1, 1])
    success = np.array([1, 0, 1, 1, 0], np.float32)
    score = np.array([100, 20, 100, 100, 50], np.float32)
    steps = np.array([10, 30, 5, 5, 10], np.float32)
    cloud = np.array([5, 0, 5, 0, 10], np.float32)
    tokens = np.array([50, 0, 50, 0, 100], np.float32)
    cost = tokens / 1000
    m = aggregate_points(jnp.asarray(point), success, score, steps, cloud, tokens, cost, num_points=3)
    np.testing.assert_allclose(m["episodes"], [2, 3, 0])
    np.testing.assert_allclose(m["success_rate"], [0.5, 2 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["mean_score"], [60.0, 250 / 3, 0.0], rtol=1e-6)
    # pooled ratio: (5 + 0) / (10 + 30), not the mean of per-episode ratios (0.25)
    np.testing.assert_allclose(m["cloud_step_ratio"], [5 / 40, 15 / 20, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["cloud_calls_per_episode"], [2.5, 5.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["cost_per_episode"], [0.025, 0.05, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["success_se"][0], np.sqrt(0.25 / 2), rtol=1e-6)


def test_frontier_auc_linear_interpolation_and_anchors():
    anchors = ((0.0, 0.0), (1.0, 1.0))
    np.testing.assert_allclose(frontier_auc(np.array([]), np.array([]), anchors), 0.5)
    # a point at (0.5, 1.0): triangle 0.25 + rectangle 0.5
    np.testing.assert_allclose(frontier_auc(np.array([0.5]), np.array([1.0]), anchors), 0.75)
    # dominated points change nothing
    np.testing.assert_allclose(frontier_auc(np.array([0.5, 0.6, 0.7]), np.array([1.0, 0.2, 0.9]), anchors), 0.75)


def test_frontier_auc_is_the_concave_hull_so_more_knob_values_never_lower_it():
    anchors = ((0.0, 0.25), (1.0, 1.0))
    good = frontier_auc(np.array([0.75]), np.array([1.0]), anchors)
    np.testing.assert_allclose(good, 0.75 * (0.25 + 1.0) / 2 + 0.25)
    # (0.665, 0.5) is Pareto-optimal but below the mix of device-only and (0.75, 1.0): it changes nothing
    # (joining Pareto points in order gave 0.56 here, less than the router without that point)
    np.testing.assert_allclose(frontier_auc(np.array([0.665, 0.747, 0.75]), np.array([0.5, 0.917, 1.0]), anchors),
                               good)
    # a point above the mix raises the area by its triangle
    np.testing.assert_allclose(frontier_auc(np.array([0.25, 0.75]), np.array([0.9, 1.0]), anchors),
                               0.25 * (0.25 + 0.9) / 2 + 0.5 * (0.9 + 1.0) / 2 + 0.25)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.random(6), rng.random(6)
        assert frontier_auc(x, y, anchors) >= frontier_auc(x[:4], y[:4], anchors) - 1e-12


def test_frontier_auc_holds_flat_beyond_outermost_points_and_skips_nan():
    np.testing.assert_allclose(frontier_auc(np.array([0.25, 0.75]), np.array([0.4, 0.8])), 0.4 * 0.25 + 0.6 * 0.5 + 0.8 * 0.25)
    np.testing.assert_allclose(frontier_auc(np.array([0.5, np.nan]), np.array([0.6, 0.9])), 0.6)
    assert np.isnan(frontier_auc(np.array([np.nan]), np.array([1.0])))


def test_pick_for_budget_best_within_budget_ties_to_cheaper():
    ratio = np.array([0.1, 0.25, 0.3, 0.45])
    success = np.array([0.2, 0.6, 0.6, 0.9])
    assert pick_for_budget(ratio, success, 0.3) == (1, True)  # 0.25 and 0.3 tie on success: cheaper wins
    assert pick_for_budget(ratio, success, 0.5) == (3, True)
    assert pick_for_budget(ratio, success, 0.05) == (0, False)  # nothing fits: cheapest, flagged


def test_retained():
    np.testing.assert_allclose(retained(np.array([0.45, 0.9]), 0.9), [0.5, 1.0])
    assert np.isnan(retained(np.array([0.3]), 0.0)).all()
