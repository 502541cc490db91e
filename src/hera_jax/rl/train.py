"""Fine-tuning the router on grouped preferences as one pure, jit-compiled function.

`make_preference_train(config, num_rows)` returns `train(rng, params, data) -> PreferenceTrainResult`. Unlike the IL
trainer it starts from given parameters (the previous iteration's router) and runs a fixed number of epochs: the
preference loss has no held-out labels to stop on, and a short warm-started fine-tune keeps iterations cheap.
Epochs and minibatches are `lax.scan`s; every epoch visits each row once, so the minibatch losses
(N / batch * weighted BCE of the batch) average to the full loss of rl/loss.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE
from hera_jax.router.model import RouterMLP
from hera_jax.rl.loss import weighted_bce_sum


@dataclasses.dataclass(frozen=True)
class PreferenceTrainConfig:
    learning_rate: float = 3e-4
    """Constant AdamW learning rate of the fine-tune (after a one-epoch warmup)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch_size: int = 256
    """Rows per minibatch (capped at the number of rows)."""
    epochs: int = 40
    """Epochs per RL iteration."""
    seed: int = 0
    """PRNG seed of the minibatch order."""

    LIMITS: ClassVar[dict] = {"learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE, "batch_size": COUNT,
                              "epochs": COUNT}


class PreferenceData(NamedTuple):
    x: jax.Array  # float[N, D] row features
    target: jax.Array  # float[N] label the row is pulled towards
    weight: jax.Array  # float[N] row weight; sum(weight * BCE) is the loss


class PreferenceTrainResult(NamedTuple):
    params: dict
    epoch_loss: jax.Array  # float[epochs] full loss after each epoch


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

        def epoch(state, epoch_rng):
            order = jax.random.permutation(epoch_rng, padded).reshape(steps_per_epoch, batch_size)
            (p, opt_state), _ = jax.lax.scan(sgd_step, state, order)
            return (p, opt_state), loss_fn(p, data.x, data.target, data.weight)

        (params, _), losses = jax.lax.scan(
            epoch, (params, optimizer.init(params)), jax.random.split(rng, config.epochs)
        )
        return PreferenceTrainResult(params, losses)

    return train
