"""The router: an MLP from state features to one logit of p(cloud | state)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class RouterMLP(nn.Module):
    hidden_sizes: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = nn.gelu(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


def packed_logits(params: dict, x: jax.Array, unit_head: tuple[jax.Array, ...]) -> jax.Array:
    """Logits [..., K] of K routers packed side by side in one RouterMLP-shaped network with K outputs
    (hera_jax/sweep.py). `unit_head[l]` (int[width_l]) is the router of each unit of hidden layer l (-1 for an
    unused unit). Each router owns a block of units in every hidden layer and one output column, and the weights
    between two routers' blocks are zero (the trainer keeps them there: `Heads.keep` masks their gradients), so each
    block computes its router alone with plain, unmasked GEMMs.

    One router diverging does not reach the others: a non-finite pre-activation is passed on as 0 and makes that
    router's logits NaN (as alone they would be), so no NaN or inf ever meets a zero weight (NaN * 0 is NaN) on its
    way into another router's block, forward or backward.
    """
    num_heads = params[f"Dense_{len(unit_head)}"]["bias"].shape[-1]
    owners = (*unit_head, jnp.arange(num_heads))  # the output columns own themselves
    h, poisoned = x, jnp.zeros((*x.shape[:-1], num_heads), bool)
    for i in range(len(owners)):
        layer = params[f"Dense_{i}"]
        z = h @ layer["kernel"] + layer["bias"]
        bad = ~jnp.isfinite(z)
        poisoned = poisoned | jnp.any(bad[..., None] & (owners[i][:, None] == jnp.arange(num_heads)), axis=-2)
        z = jnp.where(bad, 0.0, z)
        if i == len(unit_head):
            return jnp.where(poisoned, jnp.nan, z)
        h = nn.gelu(z)


def p_cloud(model: RouterMLP, params, features: jax.Array) -> jax.Array:
    """p(cloud | state) of each feature row: the one place the router's logit becomes a probability."""
    return jax.nn.sigmoid(model.apply({"params": params}, features))


def column_standardization(x: jax.Array, columns: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(shift, scale) that z-score `x[:, columns]` (train statistics); a constant column gets scale 1."""
    values = x[:, columns]
    std = jnp.std(values, axis=0)
    return jnp.mean(values, axis=0), jnp.where(std > 0, std, 1.0)


def standardize_columns(x: jax.Array, columns: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x.at[:, columns].set((x[:, columns] - shift) / scale)


def fold_standardization(params: dict, columns: jax.Array, shift: jax.Array, scale: jax.Array) -> dict:
    """Parameters that give on raw inputs what `params` give on `standardize_columns` inputs: the first layer
    absorbs the affine map (W x' + b with x'_j = (x_j - m_j) / s_j is (W / s) x + b - W m / s), so a checkpoint
    needs no normalizer and every scorer applies it as it is."""
    first = dict(params["Dense_0"])
    rows = first["kernel"][columns] / scale[:, None]
    first["bias"] = first["bias"] - shift @ rows
    first["kernel"] = first["kernel"].at[columns].set(rows)
    return {**params, "Dense_0": first}
