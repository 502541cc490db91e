"""Router training as one pure, jit-compiled function (purejaxrl style).

`make_train(config, input_dim, num_train)` returns `train(rng, data) -> TrainResult`. Epochs are a `lax.scan`,
minibatches inside an epoch are another; early stopping keeps the best-on-dev parameters in the scan carry and
freezes updates once `patience` epochs pass without improvement. Because it is one pure function it can be
vmapped over seeds or hyper-parameters of equal shape (experiments/sweep.py) and sharded over devices.
"""

from __future__ import annotations

import functools

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hera_jax.errors import HeraError
from hera_jax.router.config import TrainConfig  # noqa: F401  (re-exported: callers import it from here)
from hera_jax.router.metrics import auroc, weighted_bce
from hera_jax.router.model import RouterMLP, p_cloud


class TrainData(NamedTuple):
    x_train: jax.Array  # float[N, D]
    y_train: jax.Array  # int[N] 1 = needs cloud
    w_train: jax.Array  # float[N] per-example weight (1 for IL; margins for RL)
    x_dev: jax.Array
    y_dev: jax.Array


class TrainResult(NamedTuple):
    params: dict  # best-on-dev parameters
    best_epoch: jax.Array
    epochs_run: jax.Array
    train_loss: jax.Array  # float[max_epochs], NaN after stopping
    dev_loss: jax.Array
    dev_auroc: jax.Array


class _Carry(NamedTuple):
    params: dict
    opt_state: optax.OptState
    best_params: dict
    best_score: jax.Array  # higher is better
    best_epoch: jax.Array
    epochs_since_best: jax.Array
    epochs_run: jax.Array


def auto_pos_weight(y: jax.Array, weights: jax.Array) -> jax.Array:
    positives = jnp.sum(weights * (y > 0))
    negatives = jnp.sum(weights * (y <= 0))
    return jnp.where(positives > 0, negatives / jnp.maximum(positives, 1e-12), 1.0)


DEV_CHUNK_ROWS = 8192  # rows of the dev set scored at once after each epoch


def init_router_params(hidden_sizes, rng: jax.Array, example_x: jax.Array) -> dict:
    """The parameters `train(rng, data)` starts from (init half of its split rng); the sweep pads these."""
    init_rng, _ = jax.random.split(rng)
    return RouterMLP(tuple(hidden_sizes)).init(init_rng, example_x)["params"]


def make_train(config: TrainConfig, num_train: int, batch_sharding=None, skip_stopped_epochs: bool = True):
    """`batch_sharding` (a jax.sharding.Sharding, see router/sharding.py) splits each minibatch over devices.

    `skip_stopped_epochs` skips the epochs after early stopping with `lax.cond`. Under `vmap` a cond with a batched
    predicate becomes a select that copies every operand, the training set included, once per configuration, so
    vmapped callers (hera_jax/sweep.py) turn it off: the stopped epochs are then computed and discarded.
    """
    model = RouterMLP(tuple(config.hidden_sizes))
    batch_size = min(config.batch_size, num_train)
    steps_per_epoch = max(num_train // batch_size, 1)
    # Peak 1 times a (possibly traced) learning rate, so the sweep can vmap over learning rates.
    warmup_steps = max(config.warmup_epochs * steps_per_epoch, 1)
    unit_schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=warmup_steps,
        # optax needs decay > warmup; a run shorter than its warmup just never reaches the peak
        decay_steps=max(config.max_epochs * steps_per_epoch, warmup_steps + 1),
    )

    if config.select_metric not in ("dev_auroc", "dev_loss"):
        raise ValueError(f"select_metric must be 'dev_auroc' or 'dev_loss', got {config.select_metric!r}")

    def train(rng: jax.Array, data: TrainData, learning_rate=None, init_params=None, pos_weight=None) -> TrainResult:
        """`learning_rate` (default config.learning_rate), `init_params` (default: fresh init from `rng`) and
        `pos_weight` (default: config.pos_weight, or automatic) may be traced, so one compiled program can train many
        configurations (experiments/sweep.py)."""
        peak = config.learning_rate if learning_rate is None else learning_rate
        optimizer = optax.adamw(lambda step: peak * unit_schedule(step), weight_decay=config.weight_decay)
        init_rng, epochs_rng = jax.random.split(rng)
        params = model.init(init_rng, data.x_train[:1])["params"] if init_params is None else init_params
        if pos_weight is None:
            pos_weight = (auto_pos_weight(data.y_train, data.w_train) if config.pos_weight is None
                          else jnp.float32(config.pos_weight))
        dev_weights = jnp.ones(data.y_dev.shape[0], jnp.float32)

        def loss_fn(p, x, y, w):
            return weighted_bce(model.apply({"params": p}, x), y, w, pos_weight)

        def sgd_step(state, batch_idx):
            p, opt_state = state
            batch = (data.x_train[batch_idx], data.y_train[batch_idx], data.w_train[batch_idx])
            if batch_sharding is not None:  # data parallel: each device computes its slice, gradients all-reduce
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), loss

        def run_epoch(carry: _Carry, epoch_rng):
            order = jax.random.permutation(epoch_rng, num_train)[: steps_per_epoch * batch_size]
            (p, opt_state), losses = jax.lax.scan(
                sgd_step, (carry.params, carry.opt_state), order.reshape(steps_per_epoch, batch_size)
            )
            # In row chunks: a vmapped sweep would otherwise hold [configurations, dev rows, width] activations at
            # once (tens of GiB for 256 configurations and 100k dev rows).
            dev_logits = jax.lax.map(lambda x: model.apply({"params": p}, x), data.x_dev, batch_size=DEV_CHUNK_ROWS)
            dev_loss = weighted_bce(dev_logits, data.y_dev, dev_weights, pos_weight)
            dev_auc = auroc(jax.nn.sigmoid(dev_logits), data.y_dev)
            # AUROC is undefined on a one-class dev set; fall back to the loss there.
            use_auc = (config.select_metric == "dev_auroc") & ~jnp.isnan(dev_auc)
            score = jnp.where(use_auc, dev_auc, -dev_loss)
            improved = score > carry.best_score
            best_params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), p, carry.best_params)
            new_carry = _Carry(
                params=p,
                opt_state=opt_state,
                best_params=best_params,
                best_score=jnp.where(improved, score, carry.best_score),
                best_epoch=jnp.where(improved, carry.epochs_run, carry.best_epoch),
                epochs_since_best=jnp.where(improved, 0, carry.epochs_since_best + 1),
                epochs_run=carry.epochs_run + 1,
            )
            return new_carry, (jnp.mean(losses), dev_loss, dev_auc)

        def epoch(carry: _Carry, epoch_rng):
            stopped = carry.epochs_since_best >= config.patience
            nan3 = (jnp.float32(jnp.nan),) * 3
            if skip_stopped_epochs:
                return jax.lax.cond(stopped, lambda c, r: (c, nan3), run_epoch, carry, epoch_rng)
            ran, metrics = run_epoch(carry, epoch_rng)
            keep = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), (carry, nan3), (ran, metrics))
            return keep

        carry = _Carry(
            params=params,
            opt_state=optimizer.init(params),
            best_params=params,
            best_score=jnp.float32(-jnp.inf),
            best_epoch=jnp.int32(-1),
            epochs_since_best=jnp.int32(0),
            epochs_run=jnp.int32(0),
        )
        carry, (train_loss, dev_loss, dev_auc) = jax.lax.scan(
            epoch, carry, jax.random.split(epochs_rng, config.max_epochs)
        )
        return TrainResult(carry.best_params, carry.best_epoch, carry.epochs_run, train_loss, dev_loss, dev_auc)

    return train


class NonFiniteError(HeraError, ValueError):
    """Training produced NaN/inf (parameters or losses); nothing trained from it may be used or saved."""


@jax.jit
def _all_finite(leaves: list[jax.Array]) -> list[jax.Array]:
    return [jnp.all(jnp.isfinite(leaf)) for leaf in leaves]


def nonfinite_leaves(params) -> list[str]:
    """Paths of the parameter arrays holding NaN/inf (one jitted reduction per leaf, pulled to host together)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    finite = jax.device_get(_all_finite([leaf for _, leaf in leaves]))
    return [jax.tree_util.keystr(path) for (path, _), ok in zip(leaves, finite) if not ok]


def check_finite_result(result: TrainResult, source: str) -> None:
    """Refuse a training result with NaN/inf losses or parameters, naming the first bad epoch. Runs once, on the
    host, after the jitted `train` (no sync inside the scan); `source` says what was trained on."""
    epochs = int(result.epochs_run)
    for name, values in (("train loss", result.train_loss), ("dev loss", result.dev_loss)):
        bad = np.flatnonzero(~np.isfinite(np.asarray(values)[:epochs]))
        if bad.size:
            raise NonFiniteError(
                f"{source}: {name} is {float(np.asarray(values)[bad[0]])} at epoch {int(bad[0])} (of {epochs} run); "
                "look for NaN/inf features or lower the learning rate (nothing was saved)"
            )
    bad_leaves = nonfinite_leaves(result.params)
    if bad_leaves:
        raise NonFiniteError(f"{source}: trained parameters {', '.join(bad_leaves)} hold NaN/inf (nothing was saved)")


PREDICT_CHUNK_ROWS = 1 << 20


def predict_p_cloud(config: TrainConfig, params, features: jax.Array) -> jax.Array:
    """p(cloud) of every row; more than PREDICT_CHUNK_ROWS rows go through in equal chunks (the last one padded:
    one compile), so a ten-million-row table needs no second copy of its features on the device."""
    hidden = tuple(config.hidden_sizes)
    rows = features.shape[0]
    if rows <= PREDICT_CHUNK_ROWS:
        return _jitted_p_cloud(hidden, params, features)
    parts = []
    for start in range(0, rows, PREDICT_CHUNK_ROWS):
        chunk = jnp.asarray(features[start:start + PREDICT_CHUNK_ROWS])
        size = chunk.shape[0]
        if size < PREDICT_CHUNK_ROWS:
            chunk = jnp.pad(chunk, ((0, PREDICT_CHUNK_ROWS - size), (0, 0)))
        parts.append(_jitted_p_cloud(hidden, params, chunk)[:size])
    return jnp.concatenate(parts)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_p_cloud(hidden_sizes: tuple[int, ...], params, features: jax.Array) -> jax.Array:
    return p_cloud(RouterMLP(hidden_sizes), params, features)
