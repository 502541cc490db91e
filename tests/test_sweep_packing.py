"""Narrow sweep configurations packed into one network train exactly as they would alone (hera_jax/sweep_packing)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.router.model import RouterMLP, packed_logits
from hera_jax.router.train import TrainConfig, init_router_params, make_train
from hera_jax.sweep import (SweepGrid, grid_packing, grid_points, make_sweep, pad_params, padded_widths,
                            unpad_params)
from hera_jax.sweep_packing import pack_configurations, pack_params, slot_heads, unpack_params
from tests.test_sweep import _data


def test_default_grid_packs_into_half_the_networks():
    grid = SweepGrid()
    points = grid_points(grid)
    keys = list(zip(points.seed.tolist(), points.learning_rate.tolist()))
    packing = pack_configurations(keys, np.asarray(grid.hidden_sizes)[points.width_index],
                                  padded_widths(grid.hidden_sizes))
    assert (len(points.seed), packing.num_slots, packing.num_heads) == (64, 32, 3)
    assert grid_packing(grid).num_slots == 32 and grid_packing(grid, pack=False).num_slots == 64
    unpackable = SweepGrid(hidden_sizes=((128, 64), (256, 128)))  # 128 + 256 units do not fit in 256
    assert grid_packing(unpackable).num_slots == len(grid_points(unpackable).seed)
    for s in range(packing.num_slots):
        members = np.flatnonzero(packing.slot == s)
        assert len({keys[c] for c in members}) == 1  # a network holds one seed and learning rate
        assert sorted(packing.head[members].tolist()) == list(range(len(members)))
        assert np.all(packing.width[members].sum(axis=0) <= packing.capacity)
        for layer in range(2):  # blocks do not overlap
            owner = packing.unit_owner(layer)[s]
            assert np.sum(owner >= 0) == packing.width[members, layer].sum()


def test_pack_then_unpack_returns_every_configuration():
    hidden_sizes = ((8, 4), (16, 8), (24, 12))
    widths = np.asarray([h for h in hidden_sizes for _ in range(2)])
    packing = pack_configurations([0, 1, 0, 1, 0, 1], widths, padded_widths(hidden_sizes))
    assert (packing.num_slots, packing.num_heads) == (4, 2)
    example = jnp.zeros((1, 5))
    wide = jax.eval_shape(lambda r: init_router_params((24, 12), r, example), jax.random.key(0))
    configs = [pad_params(init_router_params(tuple(w), jax.random.key(i), example), wide) for i, w in enumerate(widths)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *configs)
    back = unpack_params(pack_params(stacked, packing), packing, wide)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), back, stacked)


def test_packed_sweep_equals_the_unpacked_sweep_and_separate_runs():
    data = _data()
    # patience 1 with a high learning rate: routers of one network stop at different epochs
    base = TrainConfig(max_epochs=8, patience=1, batch_size=64)
    grid = SweepGrid(seeds=(0, 1), learning_rates=(1e-3, 3e-2), hidden_sizes=((8, 4), (16, 8), (24, 12)))
    packed, _ = jax.jit(make_sweep(base, grid, 512))(data)
    alone_each, _ = jax.jit(make_sweep(base, grid, 512, pack=False))(data)
    assert packed.dev_auroc.shape == (12, 8)
    np.testing.assert_array_equal(np.asarray(packed.epochs_run), np.asarray(alone_each.epochs_run))
    np.testing.assert_array_equal(np.asarray(packed.best_epoch), np.asarray(alone_each.best_epoch))
    assert len(set(np.asarray(packed.epochs_run).tolist())) > 1  # early stopping differs between configurations
    for field in ("train_loss", "dev_loss", "dev_auroc"):
        np.testing.assert_allclose(np.asarray(getattr(packed, field)), np.asarray(getattr(alone_each, field)),
                                   atol=1e-5, err_msg=field)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), packed.params, alone_each.params)
    points = grid_points(grid)
    i = 2  # 8x4 at learning rate 3e-2, seed 0: it shares a network with a 16x8 router
    config = dataclasses.replace(base, hidden_sizes=(8, 4), learning_rate=float(points.learning_rate[i]))
    alone = jax.jit(make_train(config, 512))(jax.random.key(int(points.seed[i])), data)
    assert int(packed.epochs_run[i]) == int(alone.epochs_run)
    np.testing.assert_allclose(np.asarray(packed.dev_loss[i]), np.asarray(alone.dev_loss), atol=1e-5)
    mine = unpad_params(jax.tree.map(lambda a: a[i], packed.params), (8, 4), 12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), mine, alone.params)


def test_a_diverged_router_leaves_its_neighbour_untouched():
    hidden_sizes = ((8, 4), (16, 8))
    widths = np.asarray(hidden_sizes)
    packing = pack_configurations([0, 0], widths, (24, 12))
    example = jnp.zeros((1, 6))
    wide = jax.eval_shape(lambda r: init_router_params((24, 12), r, example), jax.random.key(0))
    configs = [pad_params(init_router_params(tuple(w), jax.random.key(i), example), wide) for i, w in enumerate(widths)]
    slot = jax.tree.map(lambda a: a[0], pack_params(jax.tree.map(lambda *a: jnp.stack(a), *configs), packing))
    units = tuple(u[0] for u in slot_heads(packing).unit_head)
    healthy_head = int(packing.head[1])
    poisoned = jax.tree.map(lambda a: a, slot)
    rows = np.flatnonzero(packing.unit_owner(0)[0] == 0)  # the 8x4 router's units: its block of Dense_1
    cols = np.flatnonzero(packing.unit_owner(1)[0] == 0)
    poisoned["Dense_1"]["kernel"] = slot["Dense_1"]["kernel"].at[rows[:, None], cols[None, :]].set(jnp.nan)
    poisoned["Dense_0"]["bias"] = slot["Dense_0"]["bias"].at[rows[0]].set(jnp.inf)
    x = jax.random.normal(jax.random.key(3), (32, 6))

    def healthy_loss(p):
        return jnp.sum(packed_logits(p, x, units)[:, healthy_head] ** 2)

    logits = packed_logits(poisoned, x, units)
    assert np.all(np.isnan(np.asarray(logits[:, 1 - healthy_head])))
    alone = RouterMLP((16, 8)).apply({"params": unpad_params(configs[1], (16, 8), 6)}, x)
    np.testing.assert_allclose(np.asarray(logits[:, healthy_head]), np.asarray(alone), atol=1e-5)
    # the summed loss (NaN: the diverged router's part) still gives the healthy router exactly its own gradient
    grads = jax.grad(lambda p: jnp.sum(packed_logits(p, x, units) ** 2))(poisoned)
    clean = jax.grad(healthy_loss)(slot)
    mine, want = (unpack_params(jax.tree.map(lambda a: a[None], g), packing, wide) for g in (grads, clean))
    for got, expected in zip(jax.tree.leaves(mine), jax.tree.leaves(want)):
        assert np.all(np.isfinite(np.asarray(got[1])))
        np.testing.assert_allclose(np.asarray(got[1]), np.asarray(expected[1]), atol=1e-5)


def test_arrays_every_router_shares_need_no_gradient_select():
    """Every router reads every input feature and each bias belongs to one unit, so only the kernels between hidden
    layers have weights to drop; the others are None (no select over the largest gradient at every step)."""
    heads = slot_heads(grid_packing(SweepGrid()))
    assert heads.keep["Dense_0"] == {"kernel": None, "bias": None}
    for layer in ("Dense_1", "Dense_2"):
        assert heads.keep[layer]["bias"] is None
        kernel = np.asarray(heads.keep[layer]["kernel"])
        assert kernel.dtype == bool and kernel.any() and not kernel.all()
