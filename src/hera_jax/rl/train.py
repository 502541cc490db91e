"""Fine-tuning the router on grouped preferences as one pure, jit-compiled function.

`make_preference_train(config, num_rows)` returns `train(rng, params, data) -> PreferenceTrainResult`. Unlike the IL
trainer it starts from given parameters (the previous iteration's router) and runs a fixed number of epochs. Rows
with a held-out weight (a share of the state groups, kept out of training by the caller) make it keep the epoch
with the lowest held-out loss instead of the last: a group's label is one draw of the device's dice at that state,
and a warm-started network learns the draws of the training states.
Epochs and minibatches are `lax.scan`s; every epoch visits each row once, so the minibatch losses
(N / batch * weighted BCE of the batch) average to the full loss of rl/loss.py.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hera_jax.rl.config import PreferenceTrainConfig  # noqa: F401  (re-exported)
from hera_jax.router.model import RouterMLP
from hera_jax.rl.loss import weighted_bce_sum


class PreferenceData(NamedTuple):
    x: jax.Array  # float[N, D] row features
    target: jax.Array  # float[N] label the row is pulled towards
    weight: jax.Array  # float[N] row weight; sum(weight * BCE) is the loss
    heldout_weight: jax.Array | None = None  # float[N] weight in the held-out loss; None or all 0: keep the last epoch


class PreferenceTrainResult(NamedTuple):
    params: dict  # of the epoch with the lowest held-out loss (the last one without held-out rows)
    epoch_loss: jax.Array  # float[epochs] full training loss after each epoch
    heldout_loss: jax.Array  # float[epochs] held-out loss after each epoch (0 without held-out rows)
    best_epoch: jax.Array  # int: index of the epoch whose parameters are returned; -1 = the given ones


def make_preference_train(config: PreferenceTrainConfig, hidden_sizes: tuple[int, ...], num_rows: int):
    model = RouterMLP(tuple(hidden_sizes))
    batch_size = max(min(config.batch_size, num_rows), 1)
    steps_per_epoch = max(-(-num_rows // batch_size), 1)  # ceil: every row is seen once per epoch
    padded = steps_per_epoch * batch_size
    schedule = optax.linear_schedule(0.0, config.learning_rate, transition_steps=steps_per_epoch)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)

    def loss_fn(params, x, target, weight):
        return weighted_bce_sum(model.apply({"params": params}, x), target, weight)

    def train(rng: jax.Array, params: dict, data: PreferenceData) -> PreferenceTrainResult:
        # Pad to whole batches with zero-weight rows so each epoch is one fixed-shape scan.
        pad = padded - num_rows
        x = jnp.concatenate([data.x, jnp.zeros((pad, data.x.shape[1]), data.x.dtype)])
        target = jnp.concatenate([data.target, jnp.zeros(pad, data.target.dtype)])
        weight = jnp.concatenate([data.weight, jnp.zeros(pad, data.weight.dtype)]) * (num_rows / batch_size)

        def sgd_step(state, idx):
            p, opt_state = state
            grads = jax.grad(loss_fn)(p, x[idx], target[idx], weight[idx])
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), None

        heldout_weight = jnp.zeros_like(data.weight) if data.heldout_weight is None else data.heldout_weight
        stop_early = jnp.sum(heldout_weight) > 0

        def epoch(state, inputs):
            p, opt_state, best = state
            epoch_rng, index = inputs
            (p, opt_state), _ = jax.lax.scan(sgd_step, (p, opt_state),
                                             jax.random.permutation(epoch_rng, padded).reshape(steps_per_epoch,
                                                                                               batch_size))
            heldout = loss_fn(p, data.x, data.target, heldout_weight)
            better = jnp.where(stop_early, heldout < best[1], True)  # ties keep the earlier epoch
            best = jax.tree.map(lambda new, old: jnp.where(better, new, old), (p, heldout, index), best)
            return (p, opt_state, best), (loss_fn(p, data.x, data.target, data.weight), heldout)

        # the starting parameters compete too (best_epoch -1): a fine-tune that only fits the draws changes nothing
        start_loss = jnp.where(stop_early, loss_fn(params, data.x, data.target, heldout_weight), jnp.inf)
        best = (params, start_loss.astype(jnp.float32), jnp.asarray(-1, jnp.int32))
        (_, _, (best_params, _, best_epoch)), (losses, heldout_losses) = jax.lax.scan(
            epoch, (params, optimizer.init(params), best),
            (jax.random.split(rng, config.epochs), jnp.arange(config.epochs, dtype=jnp.int32)),
        )
        return PreferenceTrainResult(best_params, losses, heldout_losses, best_epoch)

    return train
