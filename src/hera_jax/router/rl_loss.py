"""Grouped-preference loss of Hera's cost-aware RL stage, as per-row targets and weights.

Rows are (a) visits of RL groups and (b) IL states. The loss is

    L = sum_{g valid} m_g * BCE_g / sum_{g valid} m_g  +  il_weight * mean'_{IL rows without a valid group} BCE_i

where BCE_g is the mean over the group's visit rows of the binary cross-entropy of p(cloud | state) towards the
group's label and m_g its margin. The first term is "BCE per valid group, weighted by the normalised margin
(m_g / mean margin), averaged over valid groups". The second keeps IL labels on states RL said nothing about, so the
router does not forget them. mean' counts "needs cloud" IL rows `il_pos_weight` times, the class balance the IL
stage trained with; without it the fine-tune would recalibrate the IL part towards the device on its own, a drift
that has nothing to do with the RL labels. Both terms are a weighted sum of per-row BCEs, so `preference_targets`
turns the group table into one target and one weight per row with segment sums; a minibatch estimate of the loss is then just the
weighted BCE of its rows scaled by N / batch size (see router/rl_train.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class PreferenceRows(NamedTuple):
    """Per-row inputs of the loss (N rows, G groups)."""

    group: jax.Array  # int[N] group of the row, in 0..G-1; any value for IL-only rows
    is_visit: jax.Array  # bool[N] the row is an RL visit (counts towards its group); False for IL rows
    il_label: jax.Array  # int[N] IL label (1 = needs cloud); ignored where il_known is False
    il_known: jax.Array  # bool[N] the row carries an IL label


def preference_targets(
    rows: PreferenceRows,
    group_label: jax.Array,
    group_margin: jax.Array,
    group_valid: jax.Array,
    il_weight: float | jax.Array,
    il_pos_weight: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """(target float[N], weight float[N]) with loss = sum(weight * BCE(logit, target)) equal to the module formula.

    A row of a valid group gets its group's label and weight m_g / (sum of valid margins * visit rows of g); an IL
    row whose state has no valid group gets its IL label and weight il_weight * c_i / sum(c) over such rows, with
    c_i = il_pos_weight for "needs cloud" rows and 1 otherwise. Everything else has weight 0. Empty terms (no valid
    margin, no IL row) contribute 0 instead of NaN.
    """
    num_groups = group_label.shape[0]
    group = jnp.clip(jnp.asarray(rows.group, jnp.int32), 0, num_groups - 1)
    # An out-of-range group means "no group" (e.g. an IL state never visited in the rollouts).
    in_range = (rows.group >= 0) & (rows.group < num_groups)
    row_valid = in_range & group_valid[group]
    visit_in_valid = rows.is_visit & row_valid
    visits_per_group = jax.ops.segment_sum(visit_in_valid.astype(jnp.float32), group, num_groups)
    margins = jnp.where(group_valid, group_margin, 0.0)
    total_margin = jnp.sum(margins)
    rl_weight = jnp.where(
        visit_in_valid,
        margins[group] / jnp.maximum(total_margin * visits_per_group[group], 1e-12),
        0.0,
    )
    il_rows = rows.il_known & ~row_valid & ~rows.is_visit
    il_class = jnp.where(il_rows, jnp.where(rows.il_label > 0, il_pos_weight, 1.0), 0.0)
    il_row_weight = il_weight * il_class / jnp.maximum(jnp.sum(il_class), 1e-12)
    target = jnp.where(visit_in_valid, group_label[group], rows.il_label).astype(jnp.float32)
    return target, rl_weight + il_row_weight


def weighted_bce_sum(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, targets))


def grouped_preference_loss(
    logits: jax.Array,
    rows: PreferenceRows,
    group_label: jax.Array,
    group_margin: jax.Array,
    group_valid: jax.Array,
    il_weight: float | jax.Array,
    il_pos_weight: float | jax.Array = 1.0,
) -> jax.Array:
    """The full-batch loss for router logits float[N] (see the module docstring)."""
    target, weight = preference_targets(rows, group_label, group_margin, group_valid, il_weight, il_pos_weight)
    return weighted_bce_sum(logits, target, weight)
