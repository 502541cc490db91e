"""Router training as one pure, jit-compiled function (purejaxrl style).

`make_train(config, num_train)` returns `train(rng, data) -> TrainResult`. Epochs are a `lax.scan`, minibatches
inside an epoch are another; early stopping keeps the best-on-dev parameters in the scan carry and stops once
`patience` epochs pass without improvement (the remaining epochs are skipped, or, under vmap, run and discarded).
Because it is one pure function it can be vmapped over seeds or hyper-parameters of equal shape
(hera_jax/sweep.py) and sharded over devices; `num_heads` trains several routers packed in one network.
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
from hera_jax.router.model import RouterMLP, p_cloud, packed_logits


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
    best_score: jax.Array  # float[K] higher is better (K = 1 router, or the heads of a packed network)
    best_epoch: jax.Array  # int[K]
    epochs_since_best: jax.Array  # int[K]
    epochs_run: jax.Array  # int[K]


class Heads(NamedTuple):
    """Several routers trained side by side in one network (hera_jax/sweep.py packs narrow configurations into one
    wide slot). `unit_head` gives each hidden unit's router (model.packed_logits); `keep` is False for the weights
    between two routers' blocks, whose gradients are dropped so they stay zero (None: every weight of that array is
    kept); `head_of` names the router each parameter belongs to, so each router keeps its own best-on-dev
    parameters and its own early stopping (both params-shaped, broadcastable to each leaf)."""

    unit_head: tuple[jax.Array, ...]
    keep: dict
    head_of: dict


def auto_pos_weight(y: jax.Array, weights: jax.Array) -> jax.Array:
    positives = jnp.sum(weights * (y > 0))
    negatives = jnp.sum(weights * (y <= 0))
    return jnp.where(positives > 0, negatives / jnp.maximum(positives, 1e-12), 1.0)


DEV_CHUNK_ROWS = 8192  # rows of the dev set scored at once after each epoch


def init_router_params(hidden_sizes, rng: jax.Array, example_x: jax.Array) -> dict:
    """The parameters `train(rng, data)` starts from (init half of its split rng); the sweep pads these."""
    init_rng, _ = jax.random.split(rng)
    return RouterMLP(tuple(hidden_sizes)).init(init_rng, example_x)["params"]


def epoch_order(rng: jax.Array, epoch, num_train: int, max_epochs: int) -> jax.Array:
    """int[num_train]: the row order `train(rng, ...)` uses in `epoch` (a permutation from the epoch's key)."""
    _, epochs_rng = jax.random.split(rng)
    return jax.random.permutation(jax.random.split(epochs_rng, max_epochs)[epoch], num_train)


def make_train(config: TrainConfig, num_train: int, batch_sharding=None, skip_stopped_epochs: bool = True,
               num_heads: int | None = None):
    """`batch_sharding` (a jax.sharding.Sharding, see router/sharding.py) splits each minibatch over devices.

    `skip_stopped_epochs` skips the epochs after early stopping with `lax.cond`. Under `vmap` a cond with a batched
    predicate becomes a select that copies every operand, the training set included, once per configuration, so
    vmapped callers (hera_jax/sweep.py) turn it off: the stopped epochs are then computed and discarded.

    `num_heads` trains that many routers packed into one network (`train(..., heads=Heads(...))`, the parameters
    shaped like a RouterMLP with `num_heads` outputs). They share the minibatches, learning rate and labels; the
    loss is the sum of their losses, so each gets exactly its own gradient; each stops early on its own dev score.
    The result then has a trailing axis of heads (best_epoch [K], train_loss [max_epochs, K], ...).
    """
    model = RouterMLP(tuple(config.hidden_sizes))
    packed = num_heads is not None
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

    def train(rng: jax.Array, data: TrainData, learning_rate=None, init_params=None, pos_weight=None,
              heads: Heads | None = None, shuffle=None) -> TrainResult:
        """`learning_rate` (default config.learning_rate), `init_params` (default: fresh init from `rng`) and
        `pos_weight` (default: config.pos_weight, or automatic) may be traced, so one compiled program can train many
        configurations (hera_jax/sweep.py). `shuffle(epoch)`, if given, must return `epoch_order(rng, epoch,
        ...)`: a vmapped sweep computes each seed's orders once for all the networks that share it."""
        if packed != (heads is not None):
            raise ValueError("make_train(num_heads=K) trains with heads=Heads(...), and only then")
        peak = config.learning_rate if learning_rate is None else learning_rate
        optimizer = optax.adamw(lambda step: peak * unit_schedule(step), weight_decay=config.weight_decay)
        init_rng, _ = jax.random.split(rng)
        params = model.init(init_rng, data.x_train[:1])["params"] if init_params is None else init_params
        if pos_weight is None:
            pos_weight = (auto_pos_weight(data.y_train, data.w_train) if config.pos_weight is None
                          else jnp.float32(config.pos_weight))
        dev_weights = jnp.ones(data.y_dev.shape[0], jnp.float32)
        num_outputs = num_heads if packed else 1

        def logits_of(p, x):  # [..., K]
            if packed:
                return packed_logits(p, x, heads.unit_head)
            return model.apply({"params": p}, x)[..., None]

        def per_head(metric, logits, *args):  # one metric per output column
            return jax.vmap(lambda column: metric(column, *args), in_axes=1)(logits)

        def loss_fn(p, x, y, w):
            losses = per_head(weighted_bce, logits_of(p, x), y, w, pos_weight)
            return jnp.sum(losses), losses

        def sgd_step(state, batch_idx):
            p, opt_state = state
            batch = (data.x_train[batch_idx], data.y_train[batch_idx], data.w_train[batch_idx])
            if batch_sharding is not None:  # data parallel: each device computes its slice, gradients all-reduce
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, *batch)
            if packed:  # a select, not a product: a NaN gradient must not survive as NaN * 0
                grads = jax.tree.map(lambda g, keep: g if keep is None else jnp.where(keep, g, 0.0), grads,
                                     heads.keep, is_leaf=lambda leaf: leaf is None)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), losses

        def keep_improved(improved, new, old):
            if packed:
                return jax.tree.map(lambda n, o, head: jnp.where(improved[head], n, o), new, old, heads.head_of)
            return jax.tree.map(lambda n, o: jnp.where(improved[0], n, o), new, old)

        def run_epoch(carry: _Carry, epoch):
            # A stopped router (of a vmapped sweep, or a packed head) may train on, but its best parameters, scores
            # and counters no longer move, so it ends exactly as if it had stopped.
            stopped = carry.epochs_since_best >= config.patience
            order = (epoch_order(rng, epoch, num_train, config.max_epochs) if shuffle is None
                     else shuffle(epoch))[: steps_per_epoch * batch_size]
            (p, opt_state), losses = jax.lax.scan(
                sgd_step, (carry.params, carry.opt_state), order.reshape(steps_per_epoch, batch_size)
            )
            # In row chunks: a vmapped sweep would otherwise hold [configurations, dev rows, width] activations at
            # once (tens of GiB for 256 configurations and 100k dev rows).
            dev_logits = jax.lax.map(lambda x: logits_of(p, x), data.x_dev, batch_size=DEV_CHUNK_ROWS)
            dev_loss = per_head(weighted_bce, dev_logits, data.y_dev, dev_weights, pos_weight)
            dev_auc = per_head(lambda logits, y: auroc(jax.nn.sigmoid(logits), y), dev_logits, data.y_dev)
            # AUROC is undefined on a one-class dev set; fall back to the loss there.
            use_auc = (config.select_metric == "dev_auroc") & ~jnp.isnan(dev_auc)
            score = jnp.where(use_auc, dev_auc, -dev_loss)
            improved = (score > carry.best_score) & ~stopped
            new_carry = _Carry(
                params=p,
                opt_state=opt_state,
                best_params=keep_improved(improved, p, carry.best_params),
                best_score=jnp.where(improved, score, carry.best_score),
                best_epoch=jnp.where(improved, carry.epochs_run, carry.best_epoch),
                epochs_since_best=jnp.where(stopped, carry.epochs_since_best,
                                            jnp.where(improved, 0, carry.epochs_since_best + 1)),
                epochs_run=carry.epochs_run + ~stopped,
            )
            metrics = (jnp.mean(losses, axis=0), dev_loss, dev_auc)
            return new_carry, jax.tree.map(lambda m: jnp.where(stopped, jnp.nan, m), metrics)

        def epoch(carry: _Carry, epoch):
            if skip_stopped_epochs:
                all_stopped = jnp.all(carry.epochs_since_best >= config.patience)
                nan3 = (jnp.full(num_outputs, jnp.nan, jnp.float32),) * 3
                return jax.lax.cond(all_stopped, lambda c, e: (c, nan3), run_epoch, carry, epoch)
            return run_epoch(carry, epoch)

        carry = _Carry(
            params=params,
            opt_state=optimizer.init(params),
            best_params=params,
            best_score=jnp.full(num_outputs, -jnp.inf, jnp.float32),
            best_epoch=jnp.full(num_outputs, -1, jnp.int32),
            epochs_since_best=jnp.zeros(num_outputs, jnp.int32),
            epochs_run=jnp.zeros(num_outputs, jnp.int32),
        )
        carry, (train_loss, dev_loss, dev_auc) = jax.lax.scan(
            epoch, carry, jnp.arange(config.max_epochs)
        )
        result = TrainResult(carry.best_params, carry.best_epoch, carry.epochs_run, train_loss, dev_loss, dev_auc)
        if packed:
            return result
        return result._replace(best_epoch=result.best_epoch[0], epochs_run=result.epochs_run[0],
                               train_loss=train_loss[:, 0], dev_loss=dev_loss[:, 0], dev_auroc=dev_auc[:, 0])

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
