"""Grouped-preference loss of Hera's cost-aware RL stage, as per-row targets and weights.

Rows are (a) visits of RL groups and (b) IL states. The loss is

    L = sum_{g valid} u_g * BCE_g / sum_{g valid} u_g  +  il_weight * mean'_{IL rows without a valid group} BCE_i

where BCE_g is the mean over the group's visit rows of the binary cross-entropy of p(cloud | state) towards the
group's label and u_g its weight (rl/preferences.py's `group_weights`: by default Hera's margin m_g, so the first
term is "BCE per valid group, weighted by the normalised margin (m_g / mean margin), averaged over valid
groups"). The second keeps IL labels on states RL said nothing about, so the router does not forget them. mean' counts "needs cloud" IL rows `il_pos_weight` times, the class balance the IL
stage trained with; without it the fine-tune would recalibrate the IL part towards the device on its own, a drift
that has nothing to do with the RL labels. Both terms are a weighted sum of per-row BCEs, so `preference_targets`
turns the group table into one target and one weight per row with segment sums; a minibatch estimate of the loss
is then just the weighted BCE of its rows scaled by N / batch size (see rl/train.py).

`preference_rows` is the one builder of those rows from RL visits and IL training states, used by the RL loop
(rl/loop.py) and the sweep (hera_jax/sweep.py): rows are [RL visits; IL states], with one `il_pos_weight` rule.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hera_jax.rl.preferences import GroupPreferences, group_preferences, group_weights
from hera_jax.router.train import auto_pos_weight


class PreferenceRows(NamedTuple):
    """Per-row inputs of the loss (N rows, G groups)."""

    group: jax.Array  # int[N] group of the row, in 0..G-1; any value outside (e.g. -1) for rows without a group
    is_visit: jax.Array  # bool[N] the row is an RL visit (counts towards its group); False for IL rows
    il_label: jax.Array  # int[N] IL label (1 = needs cloud); ignored where il_known is False
    il_known: jax.Array  # bool[N] the row carries an IL label


class PreferenceTargets(NamedTuple):
    target: jax.Array  # float[N] label each row is pulled towards
    weight: jax.Array  # float[N] row weight; sum(weight * BCE(logit, target)) is the loss


def preference_targets(
    rows: PreferenceRows,
    preferences: GroupPreferences,
    il_weight: float | jax.Array,
    il_pos_weight: float | jax.Array = 1.0,
    group_weighting: str | int | jax.Array = "margin",
) -> PreferenceTargets:
    """Per-row target and weight with loss = sum(weight * BCE(logit, target)) equal to the module formula.

    A row of a valid group gets its group's label and weight u_g / (sum of valid u * visit rows of g); an IL
    row whose state has no valid group gets its IL label and weight il_weight * c_i / sum(c) over such rows, with
    c_i = il_pos_weight for "needs cloud" rows and 1 otherwise. Everything else has weight 0. Empty terms (no valid
    group weight, no IL row) contribute 0 instead of NaN.
    """
    num_groups = preferences.prefer_cloud.shape[0]
    group = jnp.clip(jnp.asarray(rows.group, jnp.int32), 0, num_groups - 1)
    # An out-of-range group means "no group" (e.g. an IL state never visited in the rollouts).
    in_range = (rows.group >= 0) & (rows.group < num_groups)
    row_valid = in_range & preferences.valid[group]
    visit_in_valid = rows.is_visit & row_valid
    visits_per_group = jax.ops.segment_sum(visit_in_valid.astype(jnp.float32), group, num_groups)
    weights = group_weights(preferences, group_weighting)
    total_weight = jnp.sum(weights)
    rl_weight = jnp.where(
        visit_in_valid,
        weights[group] / jnp.maximum(total_weight * visits_per_group[group], 1e-12),
        0.0,
    )
    il_rows = rows.il_known & ~row_valid & ~rows.is_visit
    il_class = jnp.where(il_rows, jnp.where(rows.il_label > 0, il_pos_weight, 1.0), 0.0)
    il_row_weight = il_weight * il_class / jnp.maximum(jnp.sum(il_class), 1e-12)
    target = jnp.where(visit_in_valid, preferences.prefer_cloud[group], rows.il_label).astype(jnp.float32)
    return PreferenceTargets(target, rl_weight + il_row_weight)


def weighted_bce_sum(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, targets))


def grouped_preference_loss(
    logits: jax.Array,
    rows: PreferenceRows,
    preferences: GroupPreferences,
    il_weight: float | jax.Array,
    il_pos_weight: float | jax.Array = 1.0,
    group_weighting: str | int | jax.Array = "margin",
) -> jax.Array:
    """The full-batch loss for router logits float[N] (see the module docstring)."""
    target, weight = preference_targets(rows, preferences, il_weight, il_pos_weight, group_weighting)
    return weighted_bce_sum(logits, target, weight)


class Visits(NamedTuple):
    """RL visits with the return estimates their groups are labelled by (V visits)."""

    group: jax.Array  # int[V] dense group of identical states, 0..G-1
    chose_cloud: jax.Array  # bool[V] the visit was routed to the cloud
    returns: jax.Array  # float[V] return estimate after the routing choice
    future_calls: jax.Array  # float[V] cloud calls from the visit on (estimate, this one included)


class PreferenceOptions(NamedTuple):
    """The preference settings (RLConfig.preference); rule and weighting as indices into LABEL_RULES /
    GROUP_WEIGHTINGS, so a stack of options can be vmapped (the sweep's label variants)."""

    cost_weight: float | jax.Array
    label_rule: int | jax.Array = 0
    return_tolerance: float | jax.Array = 0.0
    group_weighting: int | jax.Array = 0


class PreferenceBatch(NamedTuple):
    """Rows [RL visits; IL states] with their loss targets and weights, and the group preferences behind them."""

    preferences: GroupPreferences
    target: jax.Array  # float[V + N_il]
    weight: jax.Array  # float[V + N_il]


def preference_rows(
    visits: Visits,
    il_group: jax.Array,
    il_label: jax.Array,
    options: PreferenceOptions,
    num_groups: int,
    il_weight: float | jax.Array,
    il_pos_weight: float | jax.Array | None = None,
    il_known: jax.Array | None = None,
    excluded_groups: jax.Array | None = None,
) -> PreferenceBatch:
    """The one builder of preference rows: RL visits + IL training states -> per-row targets and weights.

    Rows are the V visits, then the N_il IL states (int[N_il] `il_group`: the group of the IL state's key, -1 if
    never visited; `il_label` its IL label). `il_pos_weight` None = #negatives / #positives over all given IL rows,
    the IL stage's class balance. `il_known` (bool[N_il], default all) drops IL rows; `excluded_groups` (bool[G])
    treats groups as unlabelled (the sweep's held-out groups, scored after training). Pure jnp: `num_groups`
    static under jit, `options` may be traced and vmapped.
    """
    num_visits, num_il = visits.group.shape[0], il_group.shape[0]
    il_label = jnp.asarray(il_label, jnp.int32)
    preferences = group_preferences(visits.group, visits.chose_cloud, visits.returns, visits.future_calls,
                                    num_groups, options.cost_weight, options.label_rule, options.return_tolerance)
    if excluded_groups is not None:
        preferences = preferences._replace(valid=preferences.valid & ~excluded_groups)
    if il_pos_weight is None:
        il_pos_weight = auto_pos_weight(il_label, jnp.ones(num_il, jnp.float32))
    rows = PreferenceRows(
        group=jnp.concatenate([jnp.asarray(visits.group, jnp.int32), jnp.asarray(il_group, jnp.int32)]),
        is_visit=jnp.concatenate([jnp.ones(num_visits, bool), jnp.zeros(num_il, bool)]),
        il_label=jnp.concatenate([jnp.zeros(num_visits, jnp.int32), il_label]),
        il_known=jnp.concatenate([jnp.zeros(num_visits, bool),
                                  jnp.ones(num_il, bool) if il_known is None else jnp.asarray(il_known, bool)]),
    )
    target, weight = preference_targets(rows, preferences, il_weight, il_pos_weight, options.group_weighting)
    return PreferenceBatch(preferences, target, weight)
