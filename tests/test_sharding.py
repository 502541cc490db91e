"""Data-parallel training equals single-device training. XLA_FLAGS must be set before jax starts, so the comparison
runs in a fresh interpreter with 4 forced host devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from hera_jax.router.sharding import check_divisible, data_mesh
from hera_jax.router.train import TrainConfig

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from hera_jax.router.sharding import data_mesh, make_sharded_train, shard_train_data
    from hera_jax.router.train import TrainConfig, TrainData, make_train

    rng = np.random.default_rng(0)
    n, n_dev, d = 1024, 256, 20
    x = rng.normal(size=(n + n_dev, d)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=n + n_dev) > 0.8).astype(np.int32)
    w = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    data = TrainData(jnp.asarray(x[:n]), jnp.asarray(y[:n]), jnp.asarray(w), jnp.asarray(x[n:]), jnp.asarray(y[n:]))
    config = TrainConfig(hidden_sizes=(32, 16), max_epochs=6, patience=6, batch_size=128)

    single = jax.jit(make_train(config, n))(jax.random.key(0), data)
    mesh = data_mesh()
    sharded_data = shard_train_data(data, mesh)
    sharded = make_sharded_train(config, n, mesh)(jax.random.key(0), sharded_data)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), single.params, sharded.params)
    print(json.dumps({
        "devices": len(jax.devices()),
        "x_train_shards": len(sharded_data.x_train.addressable_shards),
        "shard_rows": sharded_data.x_train.addressable_shards[0].data.shape[0],
        "max_param_diff": max(jax.tree.leaves(diffs)),
        "max_param": max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(single.params)),
        "single_dev_auroc": np.asarray(single.dev_auroc).tolist(),
        "sharded_dev_auroc": np.asarray(sharded.dev_auroc).tolist(),
        "single_dev_loss": np.asarray(single.dev_loss).tolist(),
        "sharded_dev_loss": np.asarray(sharded.dev_loss).tolist(),
        "best_epochs": [int(single.best_epoch), int(sharded.best_epoch)],
    }))
""")


@pytest.mark.slow
def test_sharded_training_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["x_train_shards"] == 4 and out["shard_rows"] == 256
    assert out["max_param"] > 0.05  # trained weights are not trivially equal (all zero)
    assert out["max_param_diff"] < 1e-4
    assert out["best_epochs"][0] == out["best_epochs"][1]
    np.testing.assert_allclose(out["sharded_dev_loss"], out["single_dev_loss"], atol=1e-5)
    np.testing.assert_allclose(out["sharded_dev_auroc"], out["single_dev_auroc"], atol=1e-4)


def test_batch_must_divide_over_devices():
    mesh = data_mesh(jax.devices()[:1])
    check_divisible(TrainConfig(batch_size=100), 1000, mesh)  # one device: anything divides
    fake_mesh = type("FakeMesh", (), {"size": 3})()
    with pytest.raises(ValueError, match="divide by the 3 devices"):
        check_divisible(TrainConfig(batch_size=128), 999, fake_mesh)


SWEEP_SCRIPT = textwrap.dedent("""
    import json, re
    import jax, jax.numpy as jnp, numpy as np
    from hera_jax.router.sharding import config_mesh
    from hera_jax.sweep import SweepGrid, jit_sweep, make_sweep
    from hera_jax.router.train import TrainConfig, TrainData

    rng = np.random.default_rng(0)
    n, n_dev, d = 512, 128, 12
    x = rng.normal(size=(n + n_dev, d)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=n + n_dev) > 0.5).astype(np.int32)
    data = TrainData(jnp.asarray(x[:n]), jnp.asarray(y[:n]), jnp.ones(n), jnp.asarray(x[n:]), jnp.asarray(y[n:]))
    # 6 configurations over 4 devices: padded to 8, two per device
    grid = SweepGrid(seeds=(0, 1, 2), learning_rates=(3e-3,), hidden_sizes=((8, 4), (16, 8)))
    base = TrainConfig(max_epochs=4, patience=4, batch_size=64)
    single, _ = jit_sweep(make_sweep(base, grid, n))(data)
    spread = jit_sweep(make_sweep(base, grid, n, mesh=config_mesh()))
    sharded, _ = spread(data)
    hlo = spread.lower(data).compile().as_text()
    print(json.dumps({
        "devices": len(jax.devices()),
        "configs": int(sharded.dev_loss.shape[0]),
        "per_device_kernel_1": sorted(set(re.findall(r"f32\\[(\\d+),16,8\\]", hlo))),
        "max_dev_loss_diff": float(np.nanmax(np.abs(np.asarray(single.dev_loss) - np.asarray(sharded.dev_loss)))),
        "max_param_diff": max(float(jnp.max(jnp.abs(a - b))) for a, b in
                              zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params))),
        "best_epochs": [np.asarray(single.best_epoch).tolist(), np.asarray(sharded.best_epoch).tolist()],
    }))
""")


@pytest.mark.slow
def test_sweep_configurations_spread_over_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SWEEP_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["configs"] == 6
    assert "2" in out["per_device_kernel_1"]  # each device holds 2 of the 8 (padded) configurations' weights
    assert out["max_dev_loss_diff"] < 1e-5 and out["max_param_diff"] < 1e-5
    assert out["best_epochs"][0] == out["best_epochs"][1]


def test_padding_rows_for_the_devices_changes_neither_loss_nor_balance():
    from hera_jax.router.sharding import pad_rows
    from hera_jax.router.train import TrainData, auto_pos_weight

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = np.asarray([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], np.int32)
    data = TrainData(x, y, np.ones(10, np.float32), x[:2], y[:2])
    padded = pad_rows(data, 4)
    assert padded.x_train.shape == (12, 3) and float(padded.w_train[10:].sum()) == 0.0
    np.testing.assert_allclose(float(auto_pos_weight(padded.y_train, padded.w_train)),
                               float(auto_pos_weight(data.y_train, data.w_train)))
    assert pad_rows(padded, 4) is padded


@pytest.mark.slow
def test_il_experiment_trains_data_parallel_on_all_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "experiments", "il.py"), "--out", str(tmp_path / "il"),
                           "--train.max-epochs", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "il" / "metrics.json").read_text())
    assert metrics["data_parallel_devices"] == 4 and len(metrics["devices"]) == 4
    assert metrics["metrics"]["dev"]["auroc"] > 0.7
