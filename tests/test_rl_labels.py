"""The cost-aware RL label rule (`group_preferences`) and the visits table that feeds it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.rl.preferences import group_preferences
from hera_jax.rl.visits import future_sums, group_ids, visit_table

jit_preferences = jax.jit(group_preferences, static_argnames="num_groups")


def _prefs(groups, cloud, returns, calls, num_groups, cost_weight):
    label, margin, valid = jit_preferences(
        jnp.asarray(groups), jnp.asarray(cloud, bool), jnp.asarray(returns, jnp.float32),
        jnp.asarray(calls, jnp.float32), num_groups=num_groups, cost_weight=cost_weight,
    )
    return np.asarray(label), np.asarray(margin), np.asarray(valid)


def test_hand_made_groups_ties_single_choice_and_means():
    # group 0: cloud R=1,F=3 vs device R=1,F=2 -> device cheaper (margin = cost_weight)
    # group 1: a tie (same return, same calls) -> device, valid, margin 0
    # group 2: only cloud visited -> invalid, label 0, margin 0
    # group 3: only device visited -> invalid
    # group 4: cloud mean R = (1+1)/2, F = 5; device mean R = (0+1)/2, F = (1+3)/2 = 2 -> cloud by 0.5 - 0.1*3
    groups = [0, 0, 1, 1, 2, 2, 3, 4, 4, 4, 4]
    cloud = [1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0]
    returns = [1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1]
    calls = [3, 2, 4, 4, 2, 1, 0, 5, 5, 1, 3]
    label, margin, valid = _prefs(groups, cloud, returns, calls, num_groups=5, cost_weight=0.1)
    assert label.dtype == np.int8 and margin.dtype == np.float32 and valid.dtype == bool
    np.testing.assert_array_equal(valid, [True, True, False, False, True])
    np.testing.assert_array_equal(label, [0, 0, 0, 0, 1])
    np.testing.assert_allclose(margin, [0.1, 0.0, 0.0, 0.0, 0.2], atol=1e-6)


def test_cost_weight_trades_success_against_cloud_calls():
    # cloud: return 1 with 10 future calls; device: return 0.5 with none.
    groups, cloud, returns, calls = [0, 0], [1, 0], [1.0, 0.5], [10.0, 0.0]
    cheap = _prefs(groups, cloud, returns, calls, 1, cost_weight=0.01)
    pricey = _prefs(groups, cloud, returns, calls, 1, cost_weight=0.1)
    exact_tie = _prefs(groups, cloud, returns, calls, 1, cost_weight=0.05)
    assert cheap[0][0] == 1 and cheap[1][0] == pytest.approx(0.4)
    assert pricey[0][0] == 0 and pricey[1][0] == pytest.approx(0.5)
    assert exact_tie[0][0] == 0 and exact_tie[1][0] == pytest.approx(0.0, abs=1e-6)  # tie -> device
    free = _prefs(groups, cloud, returns, calls, 1, cost_weight=0.0)
    assert free[0][0] == 1  # without a price the better return wins


def _direct(groups, cloud, returns, calls, num_groups, cost_weight):
    label = np.zeros(num_groups, np.int8)
    margin = np.zeros(num_groups, np.float32)
    valid = np.zeros(num_groups, bool)
    for g in range(num_groups):
        in_g = groups == g
        c, d = in_g & cloud, in_g & ~cloud
        if c.any() and d.any():
            s_c = returns[c].mean() - cost_weight * calls[c].mean()
            s_d = returns[d].mean() - cost_weight * calls[d].mean()
            valid[g], label[g], margin[g] = True, s_c > s_d, abs(s_c - s_d)
    return label, margin, valid


def test_matches_a_direct_per_group_loop_on_random_visits():
    rng = np.random.default_rng(0)
    n, num_groups = 3000, 400
    groups = rng.integers(0, num_groups, n)
    cloud = rng.random(n) < 0.4
    returns = rng.integers(0, 2, n).astype(np.float32)
    calls = rng.integers(0, 20, n).astype(np.float32)
    label, margin, valid = _prefs(groups, cloud, returns, calls, num_groups, 0.03)
    e_label, e_margin, e_valid = _direct(groups, cloud, returns, calls, num_groups, 0.03)
    np.testing.assert_array_equal(valid, e_valid)
    np.testing.assert_array_equal(label, e_label)
    np.testing.assert_allclose(margin, e_margin, atol=1e-5)
    assert 0 < valid.sum() < num_groups  # the draw exercises valid and invalid groups


def test_jit_and_vmap_over_cost_weights_agree_with_eager_calls():
    rng = np.random.default_rng(1)
    groups = jnp.asarray(rng.integers(0, 50, 500))
    cloud = jnp.asarray(rng.random(500) < 0.5)
    returns = jnp.asarray(rng.random(500), jnp.float32)
    calls = jnp.asarray(rng.integers(0, 10, 500), jnp.float32)
    weights = jnp.asarray([0.0, 0.01, 0.05, 0.2])
    batched = jax.jit(jax.vmap(lambda w: group_preferences(groups, cloud, returns, calls, 50, w)))(weights)
    for i, w in enumerate(weights):
        eager = group_preferences(groups, cloud, returns, calls, 50, w)
        for got, want in zip(batched, eager):
            np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want), atol=1e-6)
    # a higher price never turns a device preference into a cloud one when cloud uses more future calls
    assert int(batched[0][-1].sum()) <= int(batched[0][0].sum())


def test_future_sums_is_a_per_episode_reverse_cumsum():
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 12, 40)
    episode = np.repeat(np.arange(40), lengths)
    values = rng.normal(size=episode.size).astype(np.float32)
    got = np.asarray(jax.jit(future_sums)(episode, values))
    want = np.concatenate([np.cumsum(values[episode == e][::-1])[::-1] for e in range(40)])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_future_sums_keep_float32_precision_on_a_large_table():
    """300k rows of fractional rewards (score returns): each row's sum is as exact as its own episode allows,
    whatever comes before it in the table (a table-wide running sum would be off by ~1e-2 here)."""
    rng = np.random.default_rng(3)
    episode = np.repeat(np.arange(20_000), rng.integers(1, 30, 20_000))
    values = rng.random(episode.size).astype(np.float32)
    got = np.asarray(jax.jit(future_sums)(episode, values))
    total_from_here = np.cumsum(values[::-1].astype(np.float64))[::-1]
    ends = np.flatnonzero(np.append(episode[1:] != episode[:-1], True))
    end_of_row = ends[np.searchsorted(ends, np.arange(episode.size))]
    want = total_from_here - np.append(total_from_here[1:], 0.0)[end_of_row]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _row(episode, step, steps, actor, success, score, key=None):
    return {"episode_id": episode, "step": step, "episode_steps": steps, "actor": actor, "success": success,
            "score": score, "state_key": key or f"{episode}-{step}", "state_text": "", "route_reason": "router"}


def test_visit_table_returns_and_future_cloud_calls():
    rows = [
        _row("a", 0, 3, "cloud", True, 10), _row("a", 1, 3, "device", True, 50), _row("a", 2, 3, "cloud", True, 100),
        _row("b", 0, 2, "device", False, 20), _row("b", 1, 2, "cloud", False, -100),
    ]
    success = visit_table(rows, "success")
    np.testing.assert_array_equal(success.returns, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(success.future_cloud_calls, [2, 1, 1, 1, 1])
    np.testing.assert_array_equal(success.episode_success, [True, False])
    score = visit_table(rows, "score")
    # progress still made from each step on, failure (-100) counted as 0
    np.testing.assert_allclose(score.returns, [1.0, 0.9, 0.5, 0.0, -0.2], atol=1e-6)
    with pytest.raises(ValueError, match="return kind"):
        visit_table(rows, "reward")


def test_group_ids_share_identical_states():
    ids, keys = group_ids(["k2", "k1", "k2", "k3"])
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
    assert [keys[i] for i in ids] == ["k2", "k1", "k2", "k3"]


def test_one_step_lookahead_matches_a_direct_loop():
    from hera_jax.rl.visits import one_step_lookahead

    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 8, 30)
    episode = np.repeat(np.arange(30), lengths)
    group = rng.integers(0, 25, episode.size)
    returns = rng.random(episode.size).astype(np.float32)
    calls = rng.integers(0, 9, episode.size).astype(np.float32)
    got_r, got_f = map(np.asarray, jax.jit(one_step_lookahead, static_argnums=4)(episode, group, returns, calls, 25))
    for i in range(episode.size):
        if i + 1 == episode.size or episode[i + 1] != episode[i]:
            want_r, want_f = returns[i], calls[i]
        else:
            nxt = group == group[i + 1]
            want_r = returns[i] - returns[i + 1] + returns[nxt].mean()
            want_f = calls[i] - calls[i + 1] + calls[nxt].mean()
        np.testing.assert_allclose([got_r[i], got_f[i]], [want_r, want_f], atol=1e-5)


def test_lookahead_lets_the_cost_decide_when_both_choices_reach_the_same_state():
    """Same action either way: Monte-Carlo labels follow later luck, lookahead labels prefer the cheaper device."""
    from hera_jax.rl.visits import one_step_lookahead

    # Two episodes through state A (group 0) -> state B (group 1): cloud at A then lucky (success), device at A then
    # unlucky at B (failure). Both reach the same B, so A's choice did not matter.
    episode = np.array([0, 0, 1, 1])
    group = np.array([0, 1, 0, 1])
    cloud = np.array([True, False, False, True])
    returns = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    calls = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    mc = _prefs(group, cloud, returns, calls, 2, 0.02)
    assert mc[0][0] == 1  # Monte-Carlo: cloud "won" at A by luck
    la_r, la_f = one_step_lookahead(episode, group, returns, calls, 2)
    la = _prefs(group, cloud, np.asarray(la_r), np.asarray(la_f), 2, 0.02)
    assert la[0][0] == 0 and la[1][0] == pytest.approx(0.02, abs=1e-6)  # device, by exactly one call's price
