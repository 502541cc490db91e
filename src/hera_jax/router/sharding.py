"""Data-parallel router training over every local device (GPUs, TPU cores, or forced host devices on a CPU).

One 1-D `Mesh` named "data". Training rows are split over it (`NamedSharding(mesh, P("data"))`), the dev set and
parameters are replicated, and inside the jitted trainer each minibatch is constrained to the same row sharding, so
every device runs the forward/backward pass on its slice and XLA all-reduces the gradients. The trainer itself is
unchanged (`make_train(..., batch_sharding=...)`): the same pure function, the same random minibatch order, hence
the same result as on one device up to the order of floating-point sums.

    mesh = data_mesh()
    train = make_sharded_train(config, num_train, mesh)
    result = train(jax.random.key(0), shard_train_data(data, mesh))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hera_jax.router.train import TrainConfig, TrainData, make_train

DATA_AXIS = "data"
CONFIG_AXIS = "config"  # sweeps (hera_jax/sweep.py) spread configurations, not rows, over the devices


def _local_mesh(axis: str, devices=None) -> Mesh:
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (axis,))


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: all local devices)."""
    return _local_mesh(DATA_AXIS, devices)


def config_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: all local devices) for spreading a sweep's configurations."""
    return _local_mesh(CONFIG_AXIS, devices)


def row_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(config: TrainConfig, num_train: int, mesh: Mesh) -> None:
    batch_size = min(config.batch_size, num_train)
    if batch_size % mesh.size or num_train % mesh.size:
        raise ValueError(
            f"batch size {batch_size} and {num_train} training states must both divide by the {mesh.size} devices; "
            "pick a batch size that is a multiple of the device count and trim the training set to a multiple of it"
        )


def pad_rows(data: TrainData, multiple: int) -> TrainData:
    """Training rows padded to a multiple of `multiple` (the device count) with zero-weight rows, which change
    neither the loss nor the automatic class balance, so no state has to be dropped to split evenly."""
    pad = -data.x_train.shape[0] % multiple
    if pad == 0:
        return data
    return data._replace(
        x_train=jnp.concatenate([data.x_train, jnp.zeros((pad, data.x_train.shape[1]), data.x_train.dtype)]),
        y_train=jnp.concatenate([data.y_train, jnp.zeros(pad, data.y_train.dtype)]),
        w_train=jnp.concatenate([data.w_train, jnp.zeros(pad, data.w_train.dtype)]),
    )


def shard_train_data(data: TrainData, mesh: Mesh) -> TrainData:
    """Training rows split over the mesh; the (small) dev set copied to every device."""
    rows, everywhere = row_sharding(mesh), replicated(mesh)
    return TrainData(
        x_train=jax.device_put(data.x_train, rows),
        y_train=jax.device_put(data.y_train, rows),
        w_train=jax.device_put(data.w_train, rows),
        x_dev=jax.device_put(data.x_dev, everywhere),
        y_dev=jax.device_put(data.y_dev, everywhere),
    )


def make_sharded_train(config: TrainConfig, num_train: int, mesh: Mesh):
    """`train(rng, data) -> TrainResult`, jitted, data-parallel over `mesh`, results replicated on every device."""
    check_divisible(config, num_train, mesh)
    train = make_train(config, num_train, batch_sharding=row_sharding(mesh))
    rows, everywhere = row_sharding(mesh), replicated(mesh)
    data_shardings = TrainData(rows, rows, rows, everywhere, everywhere)
    return jax.jit(train, in_shardings=(everywhere, data_shardings), out_shardings=everywhere)
