"""The grouped-preference loss against its direct formula, and the jitted fine-tune that minimises it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.rl.loss import PreferenceRows, grouped_preference_loss, preference_targets
from hera_jax.rl.preferences import GroupPreferences
from hera_jax.rl.train import PreferenceData, PreferenceTrainConfig, make_preference_train
from hera_jax.router.model import RouterMLP


def _bce(logit, y):
    p = 1 / (1 + np.exp(-logit))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _direct_loss(logits, group, is_visit, il_label, il_known, label, margin, valid, il_weight, il_pos_weight=1.0):
    """The issue's formula, one group at a time (IL part: class-weighted mean)."""
    valid_groups = [g for g in range(len(label)) if valid[g]]
    rl = 0.0
    if valid_groups and sum(margin[g] for g in valid_groups) > 0:
        mean_margin = np.mean([margin[g] for g in valid_groups])
        per_group = []
        for g in valid_groups:
            rows = [i for i in range(len(logits)) if is_visit[i] and group[i] == g]
            bce_g = np.mean([_bce(logits[i], label[g]) for i in rows])
            per_group.append(margin[g] / mean_margin * bce_g)
        rl = np.mean(per_group)
    il_rows = [i for i in range(len(logits)) if il_known[i] and not is_visit[i]
               and not (0 <= group[i] < len(label) and valid[group[i]])]
    c = [il_pos_weight if il_label[i] else 1.0 for i in il_rows]
    il = sum(ci * _bce(logits[i], il_label[i]) for ci, i in zip(c, il_rows)) / sum(c) if il_rows else 0.0
    return rl + il_weight * il


def _random_problem(seed, n=300, num_groups=40):
    rng = np.random.default_rng(seed)
    is_visit = rng.random(n) < 0.7
    group = np.where(is_visit, rng.integers(0, num_groups, n), rng.integers(-1, num_groups, n))
    rows = PreferenceRows(
        group=jnp.asarray(group, jnp.int32),
        is_visit=jnp.asarray(is_visit),
        il_label=jnp.asarray(rng.integers(0, 2, n), jnp.int32),
        il_known=jnp.asarray(~is_visit),
    )
    has_visits = np.isin(np.arange(num_groups), group[is_visit])
    valid = (rng.random(num_groups) < 0.6) & has_visits  # a valid group was visited with both choices
    label = jnp.asarray(np.where(valid, rng.integers(0, 2, num_groups), 0), jnp.int8)
    margin = jnp.asarray(np.where(valid, rng.random(num_groups), 0.0), jnp.float32)
    logits = jnp.asarray(rng.normal(size=n) * 2, jnp.float32)
    return logits, rows, GroupPreferences(label, margin, jnp.asarray(valid))


@pytest.mark.parametrize("il_weight,il_pos_weight", [(0.0, 1.0), (0.3, 1.0), (0.3, 2.5)])
def test_loss_matches_the_direct_formula(il_weight, il_pos_weight):
    logits, rows, prefs = _random_problem(0)
    got = float(jax.jit(grouped_preference_loss)(logits, rows, prefs, il_weight, il_pos_weight))
    want = _direct_loss(*map(np.asarray, (logits, rows.group, rows.is_visit, rows.il_label, rows.il_known, *prefs)),
                        il_weight, il_pos_weight)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_targets_and_weights_shapes_and_sums():
    logits, rows, prefs = _random_problem(1)
    target, weight = preference_targets(rows, prefs, 0.5)
    chex.assert_shape([target, weight], (300,))
    chex.assert_trees_all_close(jnp.sum(jnp.where(rows.is_visit, weight, 0.0)), 1.0, rtol=1e-5)
    chex.assert_trees_all_close(jnp.sum(jnp.where(rows.is_visit, 0.0, weight)), 0.5, rtol=1e-5)
    assert bool(jnp.all(weight >= 0))


def test_empty_terms_give_zero_not_nan():
    logits, rows, prefs = _random_problem(2)
    no_groups = grouped_preference_loss(logits, rows, prefs._replace(valid=jnp.zeros_like(prefs.valid)), 0.0)
    assert float(no_groups) == 0.0
    no_il = rows._replace(il_known=jnp.zeros_like(rows.il_known))
    only_rl = grouped_preference_loss(logits, no_il, prefs, 1.0)
    with_il = grouped_preference_loss(logits, rows, prefs, 0.0)
    np.testing.assert_allclose(float(only_rl), float(with_il), rtol=1e-6)
    zero_margin = grouped_preference_loss(logits, rows, prefs._replace(margin=jnp.zeros_like(prefs.margin)), 0.0)
    assert np.isfinite(float(zero_margin)) and float(zero_margin) == 0.0


def test_jit_and_vmap_match_eager():
    problems = [_random_problem(s) for s in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *problems)
    batched = jax.jit(jax.vmap(grouped_preference_loss, in_axes=(0, 0, 0, None)))(*stacked, 0.2)
    eager = jnp.stack([grouped_preference_loss(*p, 0.2) for p in problems])
    chex.assert_trees_all_close(batched, eager, rtol=1e-5)


def test_fine_tune_lowers_the_loss_and_moves_towards_group_labels():
    rng = np.random.default_rng(3)
    n, d = 512, 8
    x = rng.normal(size=(n, d)).astype(np.float32)
    target = (x[:, 0] > 0).astype(np.float32)  # learnable preference
    weight = np.full(n, 1.0 / n, np.float32)
    data = PreferenceData(jnp.asarray(x), jnp.asarray(target), jnp.asarray(weight))
    hidden = (16,)
    params = RouterMLP(hidden).init(jax.random.key(0), data.x[:1])["params"]
    config = PreferenceTrainConfig(learning_rate=3e-3, epochs=15, batch_size=100)  # 512 rows: a ragged last batch
    train = jax.jit(make_preference_train(config, hidden, n))
    result = train(jax.random.key(1), params, data)
    again = train(jax.random.key(1), params, data)
    chex.assert_trees_all_equal(result.params, again.params)
    losses = np.asarray(result.epoch_loss)
    chex.assert_shape(losses, (15,))
    assert losses[-1] < 0.5 * losses[0]
    p = jax.nn.sigmoid(RouterMLP(hidden).apply({"params": result.params}, data.x))
    assert float(jnp.mean((p >= 0.5) == (data.target > 0))) > 0.9


def _noisy_labels(n_train=64, n_heldout=256, d=32, seed=5):
    """Labels that are coin flips at each state (like the device's dice): a wide network can memorise the training
    draws, which only raises the loss on held-out states."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_heldout, d)).astype(np.float32)
    target = (rng.random(n_train + n_heldout) < 0.5).astype(np.float32)
    is_heldout = np.arange(n_train + n_heldout) >= n_train
    weight = np.where(is_heldout, 0.0, 1.0 / n_train).astype(np.float32)
    heldout_weight = np.where(is_heldout, 1.0 / n_heldout, 0.0).astype(np.float32)
    return x, target, weight, heldout_weight


def test_early_stopping_keeps_the_epoch_with_the_lowest_heldout_loss():
    x, target, weight, heldout_weight = _noisy_labels()
    hidden = (256,)
    params = RouterMLP(hidden).init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
    config = PreferenceTrainConfig(learning_rate=3e-3, epochs=60, batch_size=32, weight_decay=0.0)
    train = jax.jit(make_preference_train(config, hidden, len(x)))
    data = PreferenceData(jnp.asarray(x), jnp.asarray(target), jnp.asarray(weight), jnp.asarray(heldout_weight))
    result = train(jax.random.key(1), params, data)
    heldout = np.asarray(result.heldout_loss)
    best = int(result.best_epoch)
    chex.assert_shape(heldout, (60,))
    assert np.asarray(result.epoch_loss)[-1] < 0.5 * np.asarray(result.epoch_loss)[0]  # the draws were learnt
    assert heldout[-1] > heldout.min() + 0.05  # ... and that hurt the held-out states
    assert best < 59
    kept_loss = float(jnp.sum(heldout_weight * optax_bce(RouterMLP(hidden).apply({"params": result.params}, x), target)))
    start_loss = float(jnp.sum(heldout_weight * optax_bce(RouterMLP(hidden).apply({"params": params}, x), target)))
    np.testing.assert_allclose(kept_loss, min(heldout.min(), start_loss), rtol=1e-5)
    if best >= 0:
        np.testing.assert_allclose(kept_loss, heldout[best], rtol=1e-5)
    else:
        chex.assert_trees_all_equal(result.params, params)

    # the same rows without held-out weights: every epoch trains the same way and the last one is kept
    plain = train(jax.random.key(1), params, data._replace(heldout_weight=None))
    np.testing.assert_allclose(np.asarray(plain.epoch_loss), np.asarray(result.epoch_loss), rtol=1e-6)
    assert int(plain.best_epoch) == 59 and not np.asarray(plain.heldout_loss).any()


def test_early_stopping_keeps_the_start_when_no_epoch_beats_it():
    x, target, weight, heldout_weight = _noisy_labels()
    target = np.where(heldout_weight > 0, 1.0 - (x[:, 0] > 0), (x[:, 0] > 0)).astype(np.float32)  # opposite rules
    hidden = (16,)
    params = RouterMLP(hidden).init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
    config = PreferenceTrainConfig(learning_rate=3e-3, epochs=10, batch_size=32)
    data = PreferenceData(jnp.asarray(x), jnp.asarray(target), jnp.asarray(weight), jnp.asarray(heldout_weight))
    result = jax.jit(make_preference_train(config, hidden, len(x)))(jax.random.key(1), params, data)
    assert int(result.best_epoch) == -1
    chex.assert_trees_all_equal(result.params, params)


def optax_bce(logits, target):
    import optax

    return optax.sigmoid_binary_cross_entropy(jnp.ravel(logits), jnp.asarray(target))
