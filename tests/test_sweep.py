import dataclasses

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.sweep import (
    SweepGrid, grid_points, jit_sweep, make_sweep, padded_widths, sweep_compiler_options, sweep_table, unpad_params,
)
from hera_jax.router.train import TrainConfig, TrainData, epoch_order, make_train


def _data(n=512, n_dev=128, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + n_dev, d)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=n + n_dev) > 0.8).astype(np.int32)
    return TrainData(jnp.asarray(x[:n]), jnp.asarray(y[:n]), jnp.ones(n), jnp.asarray(x[n:]), jnp.asarray(y[n:]))


def test_vmapped_sweep_equals_separate_runs():
    data = _data()
    base = TrainConfig(max_epochs=6, patience=2, batch_size=64)
    grid = SweepGrid(seeds=(0, 1), learning_rates=(1e-3, 3e-2), hidden_sizes=((8, 4), (16, 8)))
    result, scores = jax.jit(make_sweep(base, grid, 512))(data)
    assert scores is None  # no RL visits, no RL scores
    points = grid_points(grid)
    assert result.dev_auroc.shape == (8, 6)
    # two configurations that differ in width, learning rate and seed: the narrow one runs zero-padded
    for i in (2, 5):
        hidden = grid.hidden_sizes[int(points.width_index[i])]
        config = dataclasses.replace(base, hidden_sizes=hidden, learning_rate=float(points.learning_rate[i]))
        alone = jax.jit(make_train(config, 512))(jax.random.key(int(points.seed[i])), data)
        assert int(result.epochs_run[i]) == int(alone.epochs_run)
        assert int(result.best_epoch[i]) == int(alone.best_epoch)
        np.testing.assert_allclose(np.asarray(result.dev_loss[i]), np.asarray(alone.dev_loss), atol=1e-5)
        np.testing.assert_allclose(np.asarray(result.dev_auroc[i]), np.asarray(alone.dev_auroc), atol=1e-5)
        mine = unpad_params(jax.tree.map(lambda a: a[i], result.params), hidden, 12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), mine, alone.params)
    # the padded units of the narrow configuration never moved off zero
    narrow = jax.tree.map(lambda a: a[2], result.params)
    np.testing.assert_array_equal(np.asarray(narrow["Dense_0"]["kernel"][:, 8:]), 0.0)
    np.testing.assert_array_equal(np.asarray(narrow["Dense_1"]["kernel"][8:]), 0.0)
    np.testing.assert_array_equal(np.asarray(narrow["Dense_1"]["kernel"][:, 4:]), 0.0)
    np.testing.assert_array_equal(np.asarray(narrow["Dense_2"]["kernel"][4:]), 0.0)
    rows = sweep_table(grid, result)
    assert [(r["hidden_sizes"], r["learning_rate"], r["seed"]) for r in rows[:3]] == [
        ("8x4", 1e-3, 0), ("8x4", 1e-3, 1), ("8x4", 3e-2, 0)]


def test_widths_of_different_depth_are_rejected():
    assert padded_widths(((8, 4), (16, 2))) == (16, 4)
    with pytest.raises(ValueError, match="same depth"):
        padded_widths(((8,), (16, 8)))


# --- IL-only vs IL+RL labels and the RL cost weight -------------------------------------------------------------

from hera_jax.rl.loss import PreferenceOptions, PreferenceRows, preference_targets  # noqa: E402
from hera_jax.rl.preferences import group_preferences  # noqa: E402
from hera_jax.router.model import RouterMLP  # noqa: E402
from hera_jax.sweep import RLRows, label_targets, score_heldout, sweep_label_options  # noqa: E402
from hera_jax.router.train import auto_pos_weight  # noqa: E402


def _rl_data(num_il=256, num_visits=160, num_groups=32, d=12, seed=1):
    """RL visits whose groups prefer the cloud when feature 0 is high, at a cost in cloud calls, then IL rows."""
    rng = np.random.default_rng(seed)
    il = _data(n=num_il, d=d, seed=seed)
    group = rng.integers(0, num_groups, num_visits).astype(np.int32)
    centers = rng.normal(size=(num_groups, d)).astype(np.float32)
    x_visits = centers[group] + 0.05 * rng.normal(size=(num_visits, d)).astype(np.float32)
    chose_cloud = rng.random(num_visits) < 0.5
    hard = centers[group, 0] > 0.3
    returns = np.where(chose_cloud | ~hard, 1.0, 0.0).astype(np.float32) - 0.1 * rng.random(num_visits)
    calls = (chose_cloud + rng.integers(0, 3, num_visits)).astype(np.float32)
    il_group = np.where(rng.random(num_il) < 0.2, rng.integers(0, num_groups, num_il), -1).astype(np.int32)
    heldout = np.arange(num_groups) % 4 == 0
    data = il._replace(
        x_train=jnp.concatenate([jnp.asarray(x_visits), il.x_train]),
        y_train=jnp.concatenate([jnp.zeros(num_visits, jnp.int32), il.y_train]),
        w_train=jnp.ones(num_il + num_visits),
    )
    rl = RLRows(jnp.asarray(group), jnp.asarray(chose_cloud), jnp.asarray(returns), jnp.asarray(calls),
                jnp.asarray(il_group), jnp.asarray(heldout))
    return data, rl


def test_label_variants_are_the_il_labels_and_the_rl_stage_targets():
    data, rl = _rl_data()
    num_visits, num_groups = rl.group.shape[0], rl.heldout.shape[0]
    y_il = data.y_train[num_visits:]
    pos = auto_pos_weight(y_il, jnp.ones(y_il.shape[0]))
    heldout_state = np.asarray((rl.il_group >= 0) & rl.heldout[jnp.clip(rl.il_group, 0)])
    assert heldout_state.any()

    y, w, pos_weight = label_targets(y_il, rl, num_groups, jnp.bool_(False), PreferenceOptions(jnp.float32(0.05)), 1.0)
    np.testing.assert_array_equal(np.asarray(y[num_visits:]), np.asarray(y_il))
    np.testing.assert_array_equal(np.asarray(w), np.concatenate([np.zeros(160), ~heldout_state]).astype(np.float32))
    kept = y_il[~heldout_state]
    np.testing.assert_allclose(float(pos_weight), float(auto_pos_weight(kept, jnp.ones(kept.shape[0]))), rtol=1e-6)

    y, w, pos_weight = label_targets(y_il, rl, num_groups, jnp.bool_(True), PreferenceOptions(jnp.float32(0.05)), 0.7)
    prefs = group_preferences(rl.group, rl.chose_cloud, rl.returns, rl.future_calls, num_groups, 0.05)
    rows = PreferenceRows(jnp.concatenate([rl.group, rl.il_group]),
                          jnp.concatenate([jnp.ones(160, bool), jnp.zeros(y_il.shape[0], bool)]),
                          jnp.concatenate([jnp.zeros(160, jnp.int32), y_il]),
                          jnp.concatenate([jnp.zeros(160, bool), jnp.asarray(~heldout_state)]))
    # the IL class balance counts every IL training row, held-out or not (the RL loop's rule)
    target, weight = preference_targets(rows, prefs._replace(valid=prefs.valid & ~rl.heldout), 0.7, pos)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(target).astype(np.int32))
    np.testing.assert_allclose(np.asarray(w), np.asarray(weight), rtol=1e-6)
    assert float(pos_weight) == 1.0
    visit_w = np.asarray(w[:num_visits])
    assert np.all(visit_w[np.asarray(rl.heldout[rl.group])] == 0)  # held-out groups never train
    assert visit_w.sum() > 0


def test_cost_weight_flips_a_group_to_the_device():
    # One group: the cloud returns 1.0 with 3 future calls, the device 0.9 with 1. Free calls prefer the cloud;
    # at 0.1 per call the device wins (1 - 0.3 < 0.9 - 0.1).
    rl = RLRows(jnp.zeros(4, jnp.int32), jnp.asarray([True, True, False, False]), jnp.asarray([1.0, 1.0, 0.9, 0.9]),
                jnp.asarray([3.0, 3.0, 1.0, 1.0]), jnp.zeros(0, jnp.int32), jnp.asarray([False]))
    for cost, want in ((0.0, 1), (0.1, 0)):
        y, w, _ = label_targets(jnp.zeros(0, jnp.int32), rl, 1, jnp.bool_(True), PreferenceOptions(jnp.float32(cost)), 1.0)
        np.testing.assert_array_equal(np.asarray(y), [want] * 4)
        np.testing.assert_allclose(np.asarray(w), [0.25] * 4, rtol=1e-6)


def test_heldout_score_counts_groups_by_margin():
    # Two held-out valid groups (margins 0.5 and 0.1), one training group; the router says cloud only for group 0.
    group = jnp.asarray([0, 0, 1, 1, 1, 2, 2], jnp.int32)
    cloud = jnp.asarray([True, False, True, False, False, True, False])
    returns = jnp.asarray([1.0, 0.5, 0.4, 0.5, 0.5, 1.0, 0.0])
    rl = RLRows(group, cloud, returns, jnp.zeros(7), jnp.zeros(0, jnp.int32), jnp.asarray([True, True, False]))
    model = RouterMLP((2,))
    params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
    params = jax.tree.map(jnp.zeros_like, params)
    params["Dense_1"]["bias"] = jnp.asarray([1.0])  # with zero weights the logit is the bias
    x = jnp.asarray([[0.0]] * 7)
    agree, ratio = score_heldout(model, params, x, rl, 3, cost_weight=0.0)
    # group 0 prefers the cloud (1.0 > 0.5, margin 0.5): agrees; group 1 prefers the device (0.4 < 0.5, margin 0.1)
    np.testing.assert_allclose(float(agree), 0.5 / 0.6, rtol=1e-6)
    np.testing.assert_allclose(float(ratio), 1.0)


def test_label_sweep_equals_separate_runs_and_scores_each_config():
    data, rl = _rl_data()
    num_train = int(data.x_train.shape[0])
    base = TrainConfig(max_epochs=5, patience=5, batch_size=64)
    # 8x4 and 16x8 share one network per label variant (sweep_packing), 24x12 has its own
    # two seeds: networks of each seed share its row orders, also where every network computes its own labels
    grid = SweepGrid(seeds=(0, 1), learning_rates=(3e-3,), hidden_sizes=((8, 4), (16, 8), (24, 12)),
                     label_sources=("il", "il+rl"), cost_weights=(0.0, 0.2))
    points = grid_points(grid)
    assert len(points.seed) == 18 and points.uses_rl.tolist() == [False, False, True, True, True, True] * 3
    assert points.seed.tolist() == [0, 1] * 9
    result, scores = jax.jit(make_sweep(base, grid, num_train, il_weight=0.5, score_cost_weight=0.1))(data, rl)
    rows = sweep_table(grid, result, scores)
    assert [r["labels"] for r in rows[:6:2]] == ["il", "il+rl c=0", "il+rl c=0.2"]
    num_visits, num_groups = rl.group.shape[0], rl.heldout.shape[0]
    options = sweep_label_options(grid, points)
    for i in (0, 8, 9):  # the narrow IL-only configuration and the wide one at cost weight 0, of both seeds
        hidden = grid.hidden_sizes[int(points.width_index[i])]
        y, w, pos_weight = label_targets(data.y_train[num_visits:], rl, num_groups, jnp.bool_(points.uses_rl[i]),
                                         jax.tree.map(lambda a: a[i], options), 0.5)
        config = dataclasses.replace(base, hidden_sizes=hidden, learning_rate=float(points.learning_rate[i]))
        alone = jax.jit(make_train(config, num_train))(jax.random.key(int(points.seed[i])),
                                                       data._replace(y_train=y, w_train=w), None, None, pos_weight)
        np.testing.assert_allclose(np.asarray(result.dev_loss[i]), np.asarray(alone.dev_loss), atol=1e-5)
        assert int(result.best_epoch[i]) == int(alone.best_epoch)
        agree, ratio = score_heldout(RouterMLP(hidden), alone.params, data.x_train[:num_visits], rl, num_groups, 0.1)
        np.testing.assert_allclose(float(scores.heldout_agreement[i]), float(agree), atol=1e-5)
        np.testing.assert_allclose(float(scores.heldout_cloud_ratio[i]), float(ratio), atol=1e-5)
    # label variants really train differently
    assert not np.allclose(np.asarray(result.dev_loss[6]), np.asarray(result.dev_loss[8]))


def test_il_rl_labels_without_visits_are_refused():
    grid = SweepGrid(seeds=(0,), learning_rates=(1e-3,), hidden_sizes=((4,),), label_sources=("il+rl",))
    with pytest.raises(ValueError, match="needs RL visits"):
        jax.jit(make_sweep(TrainConfig(max_epochs=3), grid, 512))(_data())
    with pytest.raises(ValueError, match="label_sources must be among"):
        grid_points(dataclasses.replace(grid, label_sources=("rl",)))


def _sort_shapes(jaxpr) -> list[tuple[int, ...]]:
    """Operand shapes of every sort in a jaxpr, sub-jaxprs (scan bodies, ...) included."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "sort":
            shapes.append(tuple(eqn.invars[0].aval.shape))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            shapes.extend(_sort_shapes(sub))
    return shapes


def test_networks_of_one_seed_share_each_epochs_row_order():
    """The epoch's permutation (a sort of every training row) is computed once per seed, not once per network: the
    default grid's 32 networks use 4 seeds. The equality with separate runs above pins that the orders are right."""
    data = _data()
    base = TrainConfig(max_epochs=2, patience=3, batch_size=64)
    grid = SweepGrid()
    jaxpr = jax.make_jaxpr(make_sweep(base, grid, 512))(data).jaxpr
    row_sorts = [shape for shape in _sort_shapes(jaxpr) if shape[-1] == 512]
    assert row_sorts and all(shape[0] == len(grid.seeds) for shape in row_sorts), row_sorts


def test_only_gpus_compile_the_sweep_with_cublas_gemms():
    assert sweep_compiler_options("gpu") == {"xla_gpu_enable_triton_gemm": False}
    assert sweep_compiler_options("cpu") is None and sweep_compiler_options("tpu") is None
    data = _data()
    sweep = make_sweep(TrainConfig(max_epochs=2, patience=3, batch_size=64), SweepGrid(seeds=(0,)), 512)
    mine, _ = jit_sweep(sweep)(data)
    plain, _ = jax.jit(sweep)(data)
    np.testing.assert_array_equal(np.asarray(mine.dev_loss), np.asarray(plain.dev_loss))
    # XLA checks option names on every backend, so a misspelt GPU option fails here too
    assert jit_sweep(sweep, platform="gpu").lower(data).compile() is not None


def test_epoch_order_is_the_permutation_of_each_epochs_key():
    """The order a run of its own draws: its key split in two, the second split into one key per epoch."""
    rng = jax.random.key(7)
    epoch_keys = jax.random.split(jax.random.split(rng)[1], 5)
    for epoch in range(5):
        np.testing.assert_array_equal(np.asarray(epoch_order(rng, epoch, 300, 5)),
                                      np.asarray(jax.random.permutation(epoch_keys[epoch], 300)))
    assert not np.array_equal(np.asarray(epoch_order(rng, 0, 300, 5)), np.asarray(epoch_order(rng, 1, 300, 5)))
