"""Binary-classification metrics as pure jnp functions (usable inside jit and vmap)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_bce(logits: jax.Array, labels: jax.Array, weights: jax.Array, pos_weight: jax.Array) -> jax.Array:
    """Mean of per-example BCE, positives up-weighted by `pos_weight`, each example scaled by `weights`."""
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    scale = weights * jnp.where(labels > 0, pos_weight, 1.0)
    return jnp.sum(per_example * scale) / jnp.maximum(jnp.sum(scale), 1e-12)


def auroc(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Area under the ROC curve with ties counted as one half (Mann-Whitney U). NaN when one class is absent."""
    labels = labels.astype(bool)
    neg_sorted = jnp.sort(jnp.where(labels, jnp.inf, scores))  # negatives first, positives pushed to +inf
    num_pos = jnp.sum(labels)
    num_neg = labels.shape[0] - num_pos
    below = jnp.searchsorted(neg_sorted, scores, side="left")
    below_or_equal = jnp.minimum(jnp.searchsorted(neg_sorted, scores, side="right"), num_neg)
    wins = jnp.where(labels, below + 0.5 * (below_or_equal - below), 0.0)
    # float product: num_pos * num_neg overflows int32 beyond ~92k dev states
    return jnp.sum(wins) / (num_pos.astype(jnp.float32) * jnp.float32(num_neg))


def binary_metrics(scores: jax.Array, labels: jax.Array, threshold: float = 0.5) -> dict[str, jax.Array]:
    """Accuracy, AUROC, label positive rate and the cloud-step ratio (share of states predicted 'cloud')."""
    predicted = scores >= threshold
    labels = labels.astype(bool)
    return {
        "accuracy": jnp.mean(predicted == labels),
        "auroc": auroc(scores, labels),
        "positive_rate": jnp.mean(labels),
        "cloud_step_ratio": jnp.mean(predicted),
        "majority_accuracy": jnp.maximum(jnp.mean(labels), 1 - jnp.mean(labels)),
    }


def masked_binary_metrics(scores: jax.Array, labels: jax.Array, mask: jax.Array,
                          threshold: float = 0.5) -> dict[str, jax.Array]:
    """`binary_metrics` of the rows where `mask` is true, at the full array's shape: vmapped over a stack of split
    masks it evaluates every split in one compiled program (one shape, not one compile per split size)."""
    labels, mask = labels.astype(bool), mask.astype(bool)
    count = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
    predicted = scores >= threshold
    positive_rate = jnp.sum(labels & mask) / count
    return {
        "accuracy": jnp.sum((predicted == labels) & mask) / count,
        "auroc": masked_auroc(scores, labels, mask),
        "positive_rate": positive_rate,
        "cloud_step_ratio": jnp.sum(predicted & mask) / count,
        "majority_accuracy": jnp.maximum(positive_rate, 1 - positive_rate),
    }


def masked_auroc(scores: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """`auroc` of the rows where `mask` is true (rows outside it count as neither class)."""
    labels, mask = labels.astype(bool), mask.astype(bool)
    positive, negative = labels & mask, ~labels & mask
    neg_sorted = jnp.sort(jnp.where(negative, scores, jnp.inf))  # the mask's negatives first
    num_pos, num_neg = jnp.sum(positive), jnp.sum(negative)
    below = jnp.minimum(jnp.searchsorted(neg_sorted, scores, side="left"), num_neg)
    below_or_equal = jnp.minimum(jnp.searchsorted(neg_sorted, scores, side="right"), num_neg)
    wins = jnp.where(positive, below + 0.5 * (below_or_equal - below), 0.0)
    return jnp.sum(wins) / (num_pos.astype(jnp.float32) * num_neg.astype(jnp.float32))


@jax.jit
def split_binary_metrics(scores: jax.Array, labels: jax.Array, masks: jax.Array,
                         threshold: jax.Array) -> dict[str, jax.Array]:
    """`masked_binary_metrics` for each row of `masks` (bool[S, N]): dict of float[S] arrays."""
    return jax.vmap(masked_binary_metrics, in_axes=(None, None, 0, None))(scores, labels, masks, threshold)
