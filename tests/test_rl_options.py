"""The stage-2 design choices of RLConfig: label rule, group weighting, exploration schedule (issue 12 item 3)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tyro

from hera_jax.rl.config import RLConfig
from hera_jax.rl.exploration import exploration_rate
from hera_jax.rl.loss import PreferenceOptions, PreferenceRows, Visits, preference_rows, preference_targets
from hera_jax.rl.preferences import GROUP_WEIGHTINGS, LABEL_RULES, GroupPreferences, group_preferences, group_weights
from hera_jax.sweep import SweepGrid, grid_points, label_variants, sweep_label_options, variant_name

# group 0: cloud R=1.0 F=3 vs device R=0.95 F=1  -> return gap 0.05
# group 1: cloud R=0.5 F=2 vs device R=0.5 F=2   -> equal returns and calls
# group 2: cloud R=0.2 F=1 vs device R=0.9 F=0   -> the device returns more
# group 3: cloud R=1.0 F=1 vs device R=1.0 F=2   -> equal returns, the cloud is cheaper later
# group 4: only the cloud visited                -> invalid
VISITS = dict(
    groups=[0, 0, 1, 1, 2, 2, 3, 3, 4],
    cloud=[1, 0, 1, 0, 1, 0, 1, 0, 1],
    returns=[1.0, 0.95, 0.5, 0.5, 0.2, 0.9, 1.0, 1.0, 1.0],
    calls=[3.0, 1.0, 2.0, 2.0, 1.0, 0.0, 1.0, 2.0, 1.0],
)


def _prefs(rule, tolerance=0.0, cost_weight=0.1):
    v = VISITS
    out = jax.jit(group_preferences, static_argnames=("num_groups", "label_rule"))(
        jnp.asarray(v["groups"]), jnp.asarray(v["cloud"], bool), jnp.asarray(v["returns"], jnp.float32),
        jnp.asarray(v["calls"], jnp.float32), num_groups=5, cost_weight=cost_weight, label_rule=rule,
        return_tolerance=tolerance)
    return GroupPreferences(*map(np.asarray, out))


def test_lexicographic_rule_hand_computed():
    strict = _prefs("lexicographic", tolerance=0.0)
    np.testing.assert_array_equal(strict.valid, [True, True, True, True, False])
    # 0: the higher return wins, however many calls it costs; 1: full tie -> device; 2: device; 3: cheaper cloud
    np.testing.assert_array_equal(strict.prefer_cloud, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(strict.margin, [0.05, 0.0, 0.7, 0.1 * 1, 0.0], atol=1e-6)
    tolerant = _prefs("lexicographic", tolerance=0.1)
    # within 0.1 the calls decide group 0: the device's 1 call beats the cloud's 3 (margin 0.1 * 2)
    np.testing.assert_array_equal(tolerant.prefer_cloud, [0, 0, 0, 1, 0])
    np.testing.assert_allclose(tolerant.margin, [0.2, 0.0, 0.7, 0.1, 0.0], atol=1e-6)


def test_linear_rule_is_the_default_and_differs_from_lexicographic():
    linear = _prefs("linear")
    default = group_preferences(jnp.asarray(VISITS["groups"]), jnp.asarray(VISITS["cloud"], bool),
                                jnp.asarray(VISITS["returns"]), jnp.asarray(VISITS["calls"]), 5, 0.1)
    chex.assert_trees_all_close(tuple(linear), tuple(map(np.asarray, default)))
    # group 0 linear: 1.0 - 0.3 < 0.95 - 0.1 -> device by 0.15, while lexicographic (tolerance 0) says cloud
    np.testing.assert_array_equal(linear.prefer_cloud, [0, 0, 0, 1, 0])
    np.testing.assert_allclose(linear.margin, [0.15, 0.0, 0.8, 0.1, 0.0], atol=1e-6)


def test_rules_vmap_by_index_and_jit_matches_eager():
    v = {k: jnp.asarray(x) for k, x in VISITS.items()}
    rules = jnp.asarray([0, 1, 1], jnp.int32)
    tolerances = jnp.asarray([0.0, 0.0, 0.1])
    batched = jax.jit(jax.vmap(lambda r, t: group_preferences(
        v["groups"], v["cloud"].astype(bool), v["returns"], v["calls"], 5, 0.1, r, t)))(rules, tolerances)
    for i, (rule, tol) in enumerate([("linear", 0.0), ("lexicographic", 0.0), ("lexicographic", 0.1)]):
        eager = _prefs(rule, tol)
        for got, want in zip(batched, eager):
            np.testing.assert_allclose(np.asarray(got[i]), want, atol=1e-6)


def test_unknown_option_names_are_refused():
    with pytest.raises(ValueError, match="label_rule must be one of"):
        _prefs("greedy")
    with pytest.raises(ValueError, match="group_weighting must be one of"):
        group_weights(_prefs("linear"), "by_size")
    with pytest.raises(ValueError, match="exploration_schedule must be one of"):
        exploration_rate(1, 0.3, 0.1, "cosine")
    with pytest.raises(ValueError, match="rates > 0"):
        exploration_rate(1, 0.3, 0.0, "exponential")


def test_group_weights_hand_computed():
    prefs = GroupPreferences(jnp.asarray([1, 0, 0, 0, 0], jnp.int8), jnp.asarray([0.4, 0.1, 0.0, 0.3, 0.0]),
                             jnp.asarray([True, True, True, True, False]))
    np.testing.assert_allclose(np.asarray(group_weights(prefs, "margin")), [0.4, 0.1, 0.0, 0.3, 0.0])
    np.testing.assert_allclose(np.asarray(group_weights(prefs, "uniform")), [1, 1, 1, 1, 0])
    # one cloud group, three valid device groups: each class sums to 1
    np.testing.assert_allclose(np.asarray(group_weights(prefs, "class_balanced")), [1, 1 / 3, 1 / 3, 1 / 3, 0],
                               rtol=1e-6)
    stacked = jax.jit(jax.vmap(lambda k: group_weights(prefs, k)))(jnp.arange(len(GROUP_WEIGHTINGS)))
    for k, name in enumerate(GROUP_WEIGHTINGS):
        np.testing.assert_allclose(np.asarray(stacked[k]), np.asarray(group_weights(prefs, name)), rtol=1e-6)


@pytest.mark.parametrize("weighting", GROUP_WEIGHTINGS)
def test_weightings_in_the_loss_rows(weighting):
    rng = np.random.default_rng(4)
    n, num_groups = 400, 30
    group = rng.integers(0, num_groups, n)
    visits = Visits(jnp.asarray(group, jnp.int32), jnp.asarray(rng.random(n) < 0.5),
                    jnp.asarray(rng.random(n), jnp.float32), jnp.asarray(rng.integers(0, 5, n), jnp.float32))
    options = PreferenceOptions(jnp.float32(0.05), jnp.int32(0), jnp.float32(0.0),
                           jnp.int32(GROUP_WEIGHTINGS.index(weighting)))
    il_group = jnp.asarray(np.where(rng.random(50) < 0.5, -1, rng.integers(0, num_groups, 50)), jnp.int32)
    il_label = jnp.asarray(rng.integers(0, 2, 50), jnp.int32)
    batch = jax.jit(preference_rows, static_argnames="num_groups")(visits, il_group, il_label, options,
                                                                  num_groups=num_groups, il_weight=0.3)
    eager = preference_rows(visits, il_group, il_label, options, num_groups, 0.3)
    chex.assert_trees_all_close(batch, eager, rtol=1e-5, atol=1e-6)
    w, target = np.asarray(batch.weight[:n]), np.asarray(batch.target[:n])
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-5)  # the RL term is normalised whatever the weighting
    np.testing.assert_allclose(np.asarray(batch.weight[n:]).sum(), 0.3, rtol=1e-5)
    valid_visit = np.asarray(batch.preferences.valid)[group]
    per_group = np.bincount(group, weights=w, minlength=num_groups)
    if weighting == "uniform":
        np.testing.assert_allclose(per_group[np.asarray(batch.preferences.valid)], 1 / batch.preferences.valid.sum(),
                                   rtol=1e-5)
    if weighting == "class_balanced":
        np.testing.assert_allclose(w[valid_visit & (target == 1)].sum(), 0.5, rtol=1e-5)
        np.testing.assert_allclose(w[valid_visit & (target == 0)].sum(), 0.5, rtol=1e-5)
    if weighting == "margin":  # today's formula: margin / (sum of margins * visits of the group)
        rows = PreferenceRows(jnp.concatenate([visits.group, il_group]), jnp.arange(n + 50) < n,
                              jnp.concatenate([jnp.zeros(n, jnp.int32), il_label]), jnp.arange(n + 50) >= n)
        pos = float((np.asarray(il_label) == 0).sum() / (np.asarray(il_label) == 1).sum())
        direct = preference_targets(rows, batch.preferences, 0.3, pos)
        chex.assert_trees_all_close(tuple(direct), (batch.target, batch.weight), rtol=1e-6)


def test_exploration_schedules():
    iters = jnp.arange(1, 8)
    constant = exploration_rate(iters, 0.3, 0.05, "constant", 5)
    linear = exploration_rate(iters, 0.3, 0.05, "linear", 5)
    exponential = exploration_rate(iters, 0.4, 0.1, "exponential", 3)
    np.testing.assert_allclose(np.asarray(constant), [0.3] * 7, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(linear), [0.3, 0.2375, 0.175, 0.1125, 0.05, 0.05, 0.05], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(exponential), [0.4, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1], rtol=1e-5)
    jitted = jax.jit(jax.vmap(lambda i: exploration_rate(i, 0.3, 0.05, 1, 5)))(iters)
    chex.assert_trees_all_close(jitted, linear, rtol=1e-6)
    np.testing.assert_allclose(float(exploration_rate(4, 0.3, 0.05, "linear", 1)), 0.05, rtol=1e-6)


def test_config_flags_parse_and_default_to_todays_behaviour():
    default = RLConfig()
    assert (default.preference.rule, default.preference.group_weighting, default.exploration.schedule) == (
        "linear", "margin", "constant")
    assert default.preference.return_estimate == "lookahead" and default.window == 0 and default.il_weight == 0.2
    parsed = tyro.cli(RLConfig, args=["--preference.rule", "lexicographic", "--preference.return-tolerance", "0.05",
                                      "--preference.group-weighting", "class_balanced", "--exploration.schedule",
                                      "linear", "--exploration.final-rate", "0.1", "--exploration.decay-iters", "4"])
    assert (parsed.preference.rule, parsed.preference.return_tolerance, parsed.preference.group_weighting) == (
        "lexicographic", 0.05, "class_balanced")
    assert (parsed.exploration.schedule, parsed.exploration.final_rate, parsed.exploration.decay_iters) == (
        "linear", 0.1, 4)


def test_sweep_grid_spans_label_rules_and_weightings():
    grid = SweepGrid(seeds=(0,), learning_rates=(1e-3,), hidden_sizes=((4,),), label_sources=("il", "il+rl"),
                     cost_weights=(0.02,), label_rules=("linear", "lexicographic"),
                     group_weightings=("margin", "uniform"), return_tolerance=0.05)
    variants = label_variants(grid)
    assert len(variants) == 1 + 4
    names = [variant_name(*v) for v in variants]
    assert names == ["il", "il+rl c=0.02", "il+rl c=0.02 uniform", "il+rl c=0.02 lexicographic",
                     "il+rl c=0.02 lexicographic uniform"]
    options = sweep_label_options(grid, grid_points(grid))
    np.testing.assert_array_equal(np.asarray(options.label_rule), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(np.asarray(options.group_weighting), [0, 0, 1, 0, 1])
    np.testing.assert_allclose(np.asarray(options.return_tolerance), [0.05] * 5)
    assert LABEL_RULES.index("lexicographic") == 1


def _fit_coin_flips(config) -> tuple[float, float]:
    """Fine-tune a fresh router on labels that are coin flips of the row (like a group's one draw of the device's
    dice): (spread of p(cloud), share of rows it reproduces)."""
    from hera_jax.rl.train import PreferenceData, make_preference_train
    from hera_jax.router.train import TrainConfig, init_router_params, predict_p_cloud

    rng = np.random.default_rng(0)
    n, dim, hidden = 1024, 384, (256, 128)  # the IL router's shape on MiniLM features
    x = jnp.asarray(rng.normal(size=(n, dim)).astype(np.float32))
    target = jnp.asarray(rng.integers(0, 2, n).astype(np.float32))
    params = init_router_params(hidden, jax.random.key(0), x[:1])
    result = jax.jit(make_preference_train(config, hidden, n))(jax.random.key(1), params,
                                                               PreferenceData(x, target, jnp.ones(n) / n))
    p = predict_p_cloud(TrainConfig(hidden_sizes=hidden), result.params, x).ravel()
    return float(p.std()), float(jnp.mean((p > 0.5) == (target > 0.5)))


def test_short_fine_tunes_do_not_memorise_one_draw_per_state():
    """Why the default fine-tune is 5 epochs (README, RL): a group's label is one draw of the device's dice, and 40
    epochs (the old default) fit the draws of the training states. On coin-flip labels the default keeps p(cloud)
    near the base rate, while 40 epochs reproduce every flip."""
    from hera_jax.rl.train import PreferenceTrainConfig

    default = PreferenceTrainConfig()
    assert default.epochs == 5
    spread, fitted = _fit_coin_flips(default)
    assert spread < 0.15 and fitted < 0.85
    spread_long, fitted_long = _fit_coin_flips(dataclasses.replace(default, epochs=40))
    assert spread_long > 0.3 and fitted_long > 0.95
