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


def p_cloud(model: RouterMLP, params, features: jax.Array) -> jax.Array:
    """p(cloud | state) of each feature row: the one place the router's logit becomes a probability."""
    return jax.nn.sigmoid(model.apply({"params": params}, features))
