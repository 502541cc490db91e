import numpy as np
import scipy.stats

from hera_jax.evaluate.frontier import aggregate_points, frontier_area, frontier_auc, frontier_value
from hera_jax.evaluate.stats import SplitLayout, UnitTable, bootstrap_intervals, resample_counts, split_metrics


def bernoulli_table(num_units, rates, seed=0, correlated=False):
    """Points with success rates `rates`; correlated: all points share one uniform draw per unit."""
    rng = np.random.default_rng(seed)
    rates = np.asarray(rates)
    draws = rng.random((num_units, 1)) if correlated else rng.random((num_units, len(rates)))
    success = (draws < rates).astype(float)
    steps = rng.integers(5, 15, (num_units, len(rates))).astype(float)
    cloud = np.floor(steps * np.linspace(0.0, 1.0, len(rates)))
    return UnitTable(success, steps, cloud, np.ones_like(success))


def flat(table, layout, key):
    return lambda w: split_metrics(w, table, layout)[key].reshape(len(w), -1)


def test_resample_counts_counts_each_unit():
    counts = resample_counts(np.array([[0, 0, 2], [1, 2, 2]]), 4)
    np.testing.assert_array_equal(counts, [[2, 0, 1, 0], [0, 1, 2, 0]])


def test_frontier_area_batched_matches_frontier_auc_per_row():
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 5)), rng.random((50, 5))
    x[3, 2] = np.nan  # skipped like frontier_auc's non-finite points
    batched = frontier_area(x, y)
    np.testing.assert_allclose(batched, [frontier_auc(x[i], y[i]) for i in range(50)])
    assert np.isnan(frontier_area(np.full((2, 3), np.nan), np.ones((2, 3)))).all()


def test_frontier_value_is_the_hull_mix_at_the_budget():
    # device-only (0, 0.1), a point below the chord of its neighbours (0.3, 0.2), two routers, cloud-only (1, 1)
    x = np.array([0.0, 0.3, 0.4, 0.5, 1.0])
    y = np.array([0.1, 0.2, 0.7, 0.8, 1.0])
    # between (0.4, 0.7) and (0.5, 0.8): a mix spending 0.463 on average
    np.testing.assert_allclose(frontier_value(x, y, 0.463), 0.7 + 0.1 * 0.63)
    # the point at 0.3 lies under the mix of (0, 0.1) and (0.4, 0.7), so it changes nothing
    np.testing.assert_allclose(frontier_value(x, y, 0.3), 0.1 + 0.6 * 0.75)
    np.testing.assert_allclose([frontier_value(x, y, b) for b in (0.0, 0.4, 1.0)], [0.1, 0.7, 1.0])
    # without cloud-only the curve is flat beyond its highest point
    np.testing.assert_allclose(frontier_value(x[:4], y[:4], 0.9), 0.8)
    assert np.isnan(frontier_value(np.full(3, np.nan), np.ones(3), 0.5))


def test_frontier_value_integrates_to_frontier_area_and_never_falls():
    rng = np.random.default_rng(2)
    x, y = rng.random((20, 6)), rng.random((20, 6))
    x[:, 0], x[:, 1] = 0.0, 1.0  # anchored, like split_metrics' device-only and cloud-only
    budgets = np.linspace(0.0, 1.0, 2001)
    values = np.stack([frontier_value(x, y, b) for b in budgets], -1)  # [20, B]
    assert (np.diff(values, axis=-1) >= -1e-12).all()
    integral = np.sum(np.diff(budgets) * (values[:, 1:] + values[:, :-1]) / 2, axis=-1)  # trapezoids
    np.testing.assert_allclose(integral, frontier_area(x, y), atol=1e-6)
    np.testing.assert_allclose(frontier_value(x, y, 0.37), [frontier_value(x[i], y[i], 0.37) for i in range(20)])


def test_split_metrics_match_direct_computation_on_a_resampled_episode_list():
    # 3 units x 3 points: device-only (0), cloud-only (1), one router point (2)
    success = np.array([[0, 1, 1], [0, 1, 0], [1, 1, 1]], float)
    steps = np.array([[10, 8, 9], [12, 10, 11], [6, 5, 6]], float)
    cloud = np.array([[0, 8, 4], [0, 10, 6], [0, 5, 2]], float)
    table = UnitTable(success, steps, cloud, np.ones_like(success))
    layout = SplitLayout(np.array([[0], [1], [2]]), device_only=0, cloud_only=1)
    resample = np.array([2, 2, 0])  # unit 2 twice, unit 0 once
    got = split_metrics(resample_counts(resample[None], 3), table, layout)
    # direct: the resampled episode list through frontier.aggregate_points and frontier_auc
    units = np.repeat(resample, 3)
    point = np.tile(np.arange(3), 3)
    direct = aggregate_points(point, success[units, point], success[units, point], steps[units, point],
                              cloud[units, point], cloud[units, point], cloud[units, point], 3)
    np.testing.assert_allclose(got["success"][0], direct["success_rate"], rtol=1e-6)
    np.testing.assert_allclose(got["cloud_step_ratio"][0], direct["cloud_step_ratio"], rtol=1e-6)
    # by hand: router success 3/3, ratio (2+2+4)/(6+6+9) = 8/21; device-only 2/3, cloud-only 1
    np.testing.assert_allclose(got["success"][0], [2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(got["cloud_step_ratio"][0, 2], 8 / 21)
    area = frontier_auc([8 / 21], [1.0], ((0.0, 2 / 3), (1.0, 1.0)))
    np.testing.assert_allclose(got["area"][0, 2], area)
    np.testing.assert_allclose(area, 8 / 21 * (2 / 3 + 1) / 2 + 13 / 21)


def test_interval_contains_estimate_and_is_reproducible():
    table = bernoulli_table(60, [0.2, 0.9, 0.5, 0.7])
    layout = SplitLayout(np.array([[0, -1], [1, -1], [2, 3]]), device_only=0, cloud_only=1)
    def statistic(w):
        m = split_metrics(w, table, layout)
        return np.concatenate([m["success"], m["cloud_step_ratio"], m["success_retained"], m["area"]], 1)
    first = bootstrap_intervals(statistic, 60, n_resamples=2000, seed=3)
    again = bootstrap_intervals(statistic, 60, n_resamples=2000, seed=3)
    np.testing.assert_array_equal(first.low, again.low)
    np.testing.assert_array_equal(first.high, again.high)
    finite = np.isfinite(first.low)
    assert finite.sum() >= 12
    assert np.all(first.low[finite] <= first.estimate[finite] + 1e-12)
    assert np.all(first.estimate[finite] <= first.high[finite] + 1e-12)
    assert np.all(first.high[:4] - first.low[:4] > 0)  # success rates vary across resamples
    np.testing.assert_array_equal(first.low[4], 0.0)  # device-only's cloud-step ratio is 0 in every resample


def test_interval_shrinks_with_more_episodes():
    layout = SplitLayout(np.array([[0]]))
    widths = []
    for units in (25, 100, 400):
        table = bernoulli_table(units, [0.5], seed=units)
        widths.append(bootstrap_intervals(flat(table, layout, "success"), units, n_resamples=2000).half_width[0])
    assert widths[0] > widths[1] > widths[2]
    # ~ 1.96 sqrt(p(1-p)/n) for a proportion near 0.5 at n = 400
    np.testing.assert_allclose(widths[2], 1.96 * np.sqrt(0.25 / 400), rtol=0.25)


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    table = bernoulli_table(40, [0.3, 0.9, 0.6, 0.6])
    table = UnitTable(*(np.concatenate([a, a[:, 2:3]], 1) for a in dataclasses_astuple(table)))
    # methods 2 and 3 are the same points (2 and 4); method 2 plays "random"
    layout = SplitLayout(np.array([[2], [4], [1]]), device_only=0, cloud_only=1, random=0)
    intervals = bootstrap_intervals(flat(table, layout, "area_minus_random"), 40, n_resamples=1000)
    assert intervals.estimate[1] == 0.0 and intervals.low[1] == 0.0 and intervals.high[1] == 0.0


def dataclasses_astuple(table):
    return table.success, table.steps, table.cloud_steps, table.present


def test_paired_difference_is_narrower_than_unpaired_for_correlated_methods():
    units = 80
    table = bernoulli_table(units, [0.5, 0.6], seed=7, correlated=True)  # B succeeds wherever A does, and more
    layout = SplitLayout(np.array([[0], [1]]))

    def difference(w):
        success = split_metrics(w, table, layout)["success"]
        return success[:, 1:] - success[:, :1]

    paired = bootstrap_intervals(difference, units, n_resamples=2000, seed=0)
    unpaired = scipy.stats.bootstrap((table.success[:, 1], table.success[:, 0]), lambda b, a, axis: b.mean(axis)
                                     - a.mean(axis), n_resamples=2000, rng=np.random.default_rng(0))
    unpaired_width = unpaired.confidence_interval.high - unpaired.confidence_interval.low
    assert 2 * paired.half_width[0] < 0.6 * unpaired_width
    assert paired.low[0] <= paired.estimate[0] <= paired.high[0]


def test_area_share_of_a_limit_and_absent_reference_give_nan():
    table = bernoulli_table(30, [0.2, 0.9, 0.5, 0.8])
    layout = SplitLayout(np.array([[2], [3]]), device_only=0, cloud_only=1, limits=(1,))
    metrics = split_metrics(np.ones((1, 30)), table, layout)
    np.testing.assert_allclose(metrics["area_share"][0, :, 0], metrics["area"][0] / metrics["area"][0, 1])
    assert np.isnan(metrics["area_minus_random"]).all()  # no random method in this layout
    no_cloud = split_metrics(np.ones((1, 30)), table, SplitLayout(np.array([[2]]), device_only=0))
    assert np.isnan(no_cloud["success_retained"]).all()
