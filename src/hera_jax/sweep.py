"""Hyper-parameter sweeps of the router as ONE compiled program.

Every configuration of a grid (seeds x learning rates x hidden widths x label variants: IL-only, or IL+RL at each
RL cost weight x label rule x group weighting) trains inside a single `jax.vmap` of the ordinary trainer
(`make_train`):

- seeds and learning rates are plain vmapped arguments of `train(rng, data, learning_rate, init_params)`;
- hidden widths share shapes through zero padding: each configuration is initialised at its own width (exactly as a
  separate run would be) and its weights are zero-padded to the grid's widest layers. A padded unit has zero
  weights in and out, so its pre-activation is 0, gelu(0) = 0, its gradients are exactly 0 and AdamW never moves it:
  the padded network computes the narrow one and trains exactly like it (up to the order of float sums);
- narrow configurations do not each take a whole padded network: those equal in all but their width (same seed,
  learning rate and labels, hence the same minibatches and steps) train side by side in one network, each in a
  block of its units with its own output and early stopping (hera_jax/sweep_packing.py), so the default grid's 64
  configurations train as 32 networks;
- label variants share shapes too: every configuration trains on the same rows [RL visits; IL training states]
  and differs only in its per-row targets and weights, computed inside the program (`label_targets`: the IL labels,
  or the RL stage's preference rows, rl/loss.py's `preference_rows`, at the configuration's label options). Groups
  of identical states held out of training then score every configuration on the RL labels (`score_heldout`).

It sits above both stages (it trains stage 1's router on stage 2's labels), so it lives at the package top, not in
router/ (stage 1, which rl/ builds on) or in rl/.

So 64 configurations cost one compile and, on an accelerator, about the wall time of a few single runs. With a
`config_mesh` the networks are spread over the devices (TPU cores, GPUs), each device training its share.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hera_jax.rl.loss import PreferenceOptions, Visits, preference_rows
from hera_jax.rl.preferences import GROUP_WEIGHTINGS, LABEL_RULES, group_preferences
from hera_jax.sweep_config import SweepGrid  # noqa: F401  (re-exported)
from hera_jax.sweep_packing import Packing, pack_configurations, pack_params, slot_heads, unpack_result
from hera_jax.rollout.routing import routes_to_cloud
from hera_jax.router.model import RouterMLP, p_cloud
from hera_jax.router.sharding import CONFIG_AXIS
from hera_jax.router.train import (TrainConfig, TrainData, TrainResult, auto_pos_weight, epoch_order,
                                   init_router_params, make_train)


LABEL_SOURCES = ("il", "il+rl")

# On a GPU the sweep's batched GEMMs go through cuBLAS instead of XLA's Triton GEMM fusions: the program compiles in
# less time and runs no slower (benchmarks/RESULTS.md, "the sweep's GEMMs through cuBLAS"). A single run keeps
# XLA's default, which is faster for its small, unbatched GEMMs.
GPU_SWEEP_COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False}


def sweep_compiler_options(platform: str | None = None) -> dict | None:
    """XLA options for compiling a sweep on `platform` (default: JAX's default backend); None: XLA's defaults."""
    return dict(GPU_SWEEP_COMPILER_OPTIONS) if (platform or jax.default_backend()) == "gpu" else None


def jit_sweep(sweep, platform: str | None = None):
    """`jax.jit(sweep)` with `sweep_compiler_options`: how sweep_app, the benchmarks and the notebook compile a
    `make_sweep` program (a plain `jax.jit` works too, with XLA's default GEMMs)."""
    options = sweep_compiler_options(platform)
    return jax.jit(sweep) if options is None else jax.jit(sweep, compiler_options=options)


class LabelVariant(NamedTuple):
    uses_rl: bool
    cost_weight: float  # NaN for IL-only
    label_rule: int  # index into LABEL_RULES (0 for IL-only)
    group_weighting: int  # index into GROUP_WEIGHTINGS (0 for IL-only)


class SweepPoint(NamedTuple):
    """The grid as flat columns, one entry per configuration (product order: widths, learning rates, label
    variants, seeds). IL-only configurations have no cost weight (NaN): it would not change their training."""

    width_index: np.ndarray  # int[C] index into grid.hidden_sizes
    learning_rate: np.ndarray  # float[C] (float32 on the device)
    seed: np.ndarray  # int[C]
    uses_rl: np.ndarray  # bool[C] trained on IL+RL labels
    cost_weight: np.ndarray  # float[C] NaN for IL-only
    label_rule: np.ndarray  # int[C] index into LABEL_RULES
    group_weighting: np.ndarray  # int[C] index into GROUP_WEIGHTINGS


def label_variants(grid: SweepGrid) -> list[LabelVariant]:
    """IL-only (if asked), then IL+RL for every cost weight x label rule x group weighting."""
    for values, names, what in ((grid.label_sources, LABEL_SOURCES, "label_sources"),
                                (grid.label_rules, LABEL_RULES, "label_rules"),
                                (grid.group_weightings, GROUP_WEIGHTINGS, "group_weightings")):
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"{what} must be among {names}, got {sorted(unknown)}")
    variants = [LabelVariant(False, float("nan"), 0, 0)] if "il" in grid.label_sources else []
    if "il+rl" in grid.label_sources:
        if not (grid.cost_weights and grid.label_rules and grid.group_weightings):
            raise ValueError("label source 'il+rl' needs at least one cost weight, label rule and group weighting")
        variants += [LabelVariant(True, float(c), LABEL_RULES.index(r), GROUP_WEIGHTINGS.index(g))
                     for c, r, g in itertools.product(grid.cost_weights, grid.label_rules, grid.group_weightings)]
    return variants


def grid_points(grid: SweepGrid) -> SweepPoint:
    rows = list(itertools.product(range(len(grid.hidden_sizes)), grid.learning_rates, label_variants(grid), grid.seeds))
    if not rows:
        raise ValueError("the sweep grid is empty: give at least one seed, learning rate, width and label source")
    w, lr, variant, s = zip(*rows)
    uses_rl, cost, rule, weighting = zip(*variant)
    return SweepPoint(np.asarray(w, np.int32), np.asarray(lr, np.float64), np.asarray(s, np.int64),
                      np.asarray(uses_rl, bool), np.asarray(cost, np.float64), np.asarray(rule, np.int32),
                      np.asarray(weighting, np.int32))


def padded_widths(hidden_sizes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    depths = {len(h) for h in hidden_sizes}
    if len(depths) != 1:
        raise ValueError(f"all hidden_sizes in a sweep need the same depth (got {sorted(depths)}); run one per depth")
    return tuple(int(max(col)) for col in zip(*hidden_sizes))


def pad_params(params: dict, target: dict) -> dict:
    """Zero-pad every leaf of `params` to the shape of the matching leaf of `target` (shapes or arrays)."""
    return jax.tree.map(
        lambda leaf, big: jnp.pad(leaf, [(0, b - s) for s, b in zip(leaf.shape, big.shape)]), params, target
    )


class RLRows(NamedTuple):
    """RL visits for the 'il+rl' label source. They are the FIRST V rows of TrainData.x_train (the row order of
    rl/loss.py's `preference_rows`); the IL training states follow, their TrainData.y_train holding the IL labels
    (y_train of visit rows is ignored)."""

    group: jax.Array  # int[V] dense group of identical states, 0..G-1
    chose_cloud: jax.Array  # bool[V] the visit was routed to the cloud
    returns: jax.Array  # float[V] return estimate after the routing choice
    future_calls: jax.Array  # float[V] cloud calls from the visit on (estimate, this one included)
    il_group: jax.Array  # int[N_il] group of each IL training row's state; -1 = never visited
    heldout: jax.Array  # bool[G] groups kept out of training and scored after it

    @property
    def visits(self) -> Visits:
        return Visits(self.group, self.chose_cloud, self.returns, self.future_calls)


class RLScores(NamedTuple):
    """Per configuration, on the visits of held-out valid groups (labels at the sweep's scoring cost weight)."""

    heldout_agreement: jax.Array  # float[C] margin-weighted share of groups whose label the router predicts
    heldout_cloud_ratio: jax.Array  # float[C] share of held-out visits the router sends to the cloud


class LabelTargets(NamedTuple):
    y: jax.Array  # int[V + N_il] training label per row
    w: jax.Array  # float[V + N_il] row weight
    pos_weight: jax.Array  # weight of positive rows in make_train's loss


def label_targets(y_il: jax.Array, rl: RLRows, num_groups: int, uses_rl: jax.Array, options: PreferenceOptions,
                  il_weight: float) -> LabelTargets:
    """Targets of one label variant over the rows [RL visits; IL training states].

    IL-only: the IL labels with weight 1 (0 on states of held-out groups), visits weight 0, positives balanced by
    #negatives / #positives (the IL stage). IL+RL: rl/loss.py's `preference_rows` at `options` (the RL loop's
    builder), with held-out groups treated as unlabelled and no extra class weight (the weights already carry the
    IL balance), so the loss is exactly the RL stage's. Pure jnp: vmapped over (uses_rl, options) it labels every
    variant at once.
    """
    num_visits = rl.group.shape[0]
    # IL rows of held-out states are dropped too, so no variant has seen a scored state in training.
    il_kept = ~((rl.il_group >= 0) & rl.heldout[jnp.clip(rl.il_group, 0, num_groups - 1)])
    batch = preference_rows(rl.visits, rl.il_group, y_il, options, num_groups, il_weight, il_known=il_kept,
                            excluded_groups=rl.heldout)
    il_label = jnp.concatenate([jnp.zeros(num_visits, jnp.int32), jnp.asarray(y_il, jnp.int32)])
    il_weight_rows = jnp.concatenate([jnp.zeros(num_visits, jnp.float32), il_kept.astype(jnp.float32)])
    y = jnp.where(uses_rl, batch.target.astype(jnp.int32), il_label)
    w = jnp.where(uses_rl, batch.weight, il_weight_rows)
    pos_weight = jnp.where(uses_rl, 1.0, auto_pos_weight(il_label, il_weight_rows))
    return LabelTargets(y, w, pos_weight)


def score_heldout(model: RouterMLP, params: dict, x_visits: jax.Array, rl: RLRows, num_groups: int,
                  cost_weight: float, threshold: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """(agreement, cloud ratio) of one router on the held-out groups' visits, labelled by the linear rule at
    `cost_weight` for every configuration (one yardstick, whatever labels a configuration trained on)."""
    label, margin, valid = group_preferences(rl.group, rl.chose_cloud, rl.returns, rl.future_calls, num_groups,
                                             cost_weight)
    scored = (valid & rl.heldout)[rl.group]
    visits_per_group = jax.ops.segment_sum(scored.astype(jnp.float32), rl.group, num_groups)
    weight = jnp.where(scored, margin[rl.group] / jnp.maximum(visits_per_group[rl.group], 1.0), 0.0)
    to_cloud = routes_to_cloud(p_cloud(model, params, x_visits), threshold)
    agree = jnp.sum(weight * (to_cloud == (label[rl.group] > 0))) / jnp.maximum(jnp.sum(weight), 1e-12)
    cloud_ratio = jnp.sum(scored * to_cloud) / jnp.maximum(jnp.sum(scored), 1)
    # No held-out margin at all (e.g. every held-out group is a tie): agreement is undefined.
    return jnp.where(jnp.sum(weight) > 0, agree, jnp.nan), cloud_ratio


def make_sweep(base: TrainConfig, grid: SweepGrid, num_train: int, mesh: Mesh | None = None,
               il_weight: float = 1.0, score_cost_weight: float = 0.02, pack: bool = True):
    """`sweep(data, rl=None) -> (TrainResult, RLScores | None)` with a leading axis over `grid_points(grid)`; jit it
    once for the whole grid, with `jit_sweep`.

    With `pack` (the default), configurations that differ only in their width train side by side in one network
    (hera_jax/sweep_packing.py: half the networks for the default grid, each router trained exactly as alone);
    without it, or when no two fit together, each configuration has a network of its own.
    `mesh` (router/sharding.py's `config_mesh`) spreads the networks over its devices (TPU cores, GPUs): they are
    padded to a multiple of the device count with copies of the last one, which are cut off again. Parameters come
    back zero-padded to the widest layers; `unpad_params` cuts one configuration's out.
    With `rl` (label source 'il+rl'), the first V training rows are RL visits, see `RLRows`.
    """
    points = grid_points(grid)
    num_configs = len(points.seed)
    packing = grid_packing(grid, pack)
    packed = packing.num_heads > 1
    num_slots = packing.num_slots
    devices = 1 if mesh is None else mesh.size
    take = np.minimum(np.arange(-(-num_slots // devices) * devices), num_slots - 1)  # pad with the last network
    lead = packing.slot_configs()[take, 0]  # one configuration of each network: its seed, learning rate, labels
    wide = dataclasses.replace(base, hidden_sizes=packing.capacity)
    # skip_stopped_epochs=False: see make_train (a cond under vmap copies the data)
    train = make_train(wide, num_train, skip_stopped_epochs=False, num_heads=packing.num_heads if packed else None)
    model = RouterMLP(wide.hidden_sizes)

    def spread(tree):
        if mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec(CONFIG_AXIS)))

    def sweep(data: TrainData, rl: RLRows | None = None) -> tuple[TrainResult, RLScores | None]:
        if rl is None and points.uses_rl.any():
            raise ValueError("label source 'il+rl' needs RL visits (rl=RLRows)")
        config_rngs = jax.vmap(jax.random.key)(jnp.asarray(points.seed))
        example = data.x_train[:1]
        out_shapes = jax.eval_shape(lambda r: init_router_params(wide.hidden_sizes, r, example), config_rngs[0])
        # Zero feature columns up to a multiple of 8 (MiniLM's 384 + step_frac = 385): GPU GEMM kernels need aligned
        # rows. The first kernel's padded rows start at zero and get zero gradients, so they stay zero.
        data = data._replace(x_train=_pad_columns(data.x_train), x_dev=_pad_columns(data.x_dev))
        wide_shapes = jax.eval_shape(lambda r: init_router_params(wide.hidden_sizes, r, data.x_train[:1]),
                                     config_rngs[0])
        # Each configuration starts where a run of its own would (its seed, its width), zero-padded; one vmapped init
        # per width (a handful of static shapes), then back in grid order.
        init_by_width = [
            jax.vmap(lambda r, h=hidden: pad_params(init_router_params(h, r, example), wide_shapes))(config_rngs)
            for hidden in grid.hidden_sizes
        ]
        init_params = jax.tree.map(
            lambda *per_width: jnp.stack(per_width)[jnp.asarray(points.width_index), jnp.arange(num_configs)],
            *init_by_width,
        )
        rngs = config_rngs[lead]
        lrs = jnp.asarray(points.learning_rate[lead], jnp.float32)
        # Networks of one seed see the same rows in the same order: each seed's epoch order (a sort of every
        # training row) is computed once, not once per network. Every device computes all seeds' orders, so over a
        # mesh this only pays while there are no more seeds than networks on a device.
        seeds, first_network, seed_index = np.unique(points.seed[lead], return_index=True, return_inverse=True)
        share_orders = len(seeds) <= len(take) // devices
        seed_rngs = rngs[first_network]  # the very keys those networks train from

        def shuffle_of(index):
            if not share_orders:
                return None
            return lambda epoch: jax.vmap(lambda r: epoch_order(r, epoch, num_train, wide.max_epochs))(
                seed_rngs)[index]
        if packed:
            slot_init = jax.tree.map(lambda a: a[take], pack_params(init_params, packing))
            heads = jax.tree.map(lambda a: a[take], slot_heads(packing))
        else:
            slot_init, heads = jax.tree.map(lambda a: a[lead], init_params), None

        def per_config(slot_result: TrainResult) -> TrainResult:
            slot_result = jax.tree.map(lambda a: a[:num_slots], slot_result)
            # unpacked, network i is configuration i (grid_packing keeps grid order)
            return unpack_result(slot_result, packing, wide_shapes) if packed else slot_result

        if rl is None:
            args = spread((rngs, lrs, slot_init, heads, seed_index))
            result = jax.vmap(lambda r, lr, p, h, i: train(r, data, lr, p, heads=h, shuffle=shuffle_of(i)))(*args)
            return _cut(per_config(result), out_shapes), None
        num_groups = rl.heldout.shape[0]
        num_visits = rl.group.shape[0]
        y_il = data.y_train[num_visits:]
        uses_rl = jnp.asarray(points.uses_rl[lead])
        options = sweep_label_options(grid, points, lead)
        labels = jax.vmap(lambda use, o: label_targets(y_il, rl, num_groups, use, o, il_weight))(uses_rl, options)

        def train_slot(r, lr, p, h, i, y, w, pos_weight):
            return train(r, data._replace(y_train=y, w_train=w), lr, p, pos_weight, heads=h, shuffle=shuffle_of(i))

        result = per_config(jax.vmap(train_slot)(*spread((rngs, lrs, slot_init, heads, seed_index, *labels))))
        x_visits = data.x_train[:num_visits]
        scores = jax.vmap(lambda p: RLScores(*score_heldout(model, p, x_visits, rl, num_groups, score_cost_weight)))(
            result.params)
        return _cut(result, out_shapes), scores

    return sweep


def grid_packing(grid: SweepGrid, pack: bool = True) -> Packing:
    """Which network each configuration of the grid trains in (`make_sweep`): with `pack`, configurations equal in
    all but their width (so the same minibatches, steps and labels) share one where their widths fit; otherwise,
    or when none fit together, one network each, in grid order."""
    points = grid_points(grid)
    num_configs = len(points.seed)
    capacity = padded_widths(grid.hidden_sizes)
    if pack:
        share_keys = list(zip(points.seed.tolist(), points.learning_rate.tolist(), points.uses_rl.tolist(),
                              np.nan_to_num(points.cost_weight).tolist(), points.label_rule.tolist(),
                              points.group_weighting.tolist()))
        packing = pack_configurations(share_keys, np.asarray(grid.hidden_sizes)[points.width_index], capacity)
        if packing.num_heads > 1:
            return packing
    return pack_configurations(list(range(num_configs)), np.zeros((num_configs, len(capacity)), int), capacity)


def _pad_columns(x: jax.Array, multiple: int = 8) -> jax.Array:
    return jnp.pad(x, ((0, 0), (0, -x.shape[1] % multiple)))


def _cut(result: TrainResult, shapes: dict) -> TrainResult:
    """Parameters without the zero rows `_pad_columns` added to the first kernel (leading axis: configurations)."""
    return result._replace(params=jax.tree.map(
        lambda a, shape: a[(slice(None), *(slice(0, n) for n in shape.shape))], result.params, shapes))


def sweep_label_options(grid: SweepGrid, points: SweepPoint, take: np.ndarray | None = None) -> PreferenceOptions:
    """The configurations' RL label options as stacked arrays (IL-only rows get harmless placeholders)."""
    take = np.arange(len(points.seed)) if take is None else take
    return PreferenceOptions(
        cost_weight=jnp.asarray(np.nan_to_num(points.cost_weight[take]), jnp.float32),
        label_rule=jnp.asarray(points.label_rule[take], jnp.int32),
        return_tolerance=jnp.full(len(take), grid.return_tolerance, jnp.float32),
        group_weighting=jnp.asarray(points.group_weighting[take], jnp.int32),
    )


def unpad_params(padded: dict, hidden_sizes: tuple[int, ...], input_dim: int) -> dict:
    """One configuration's parameters at its own width (for saving or `predict_p_cloud`)."""
    shapes = jax.eval_shape(lambda r: init_router_params(hidden_sizes, r, jnp.zeros((1, input_dim))), jax.random.key(0))
    return jax.tree.map(lambda leaf, s: leaf[tuple(slice(0, n) for n in s.shape)], padded, shapes)


def variant_name(uses_rl: bool, cost_weight: float, label_rule: int = 0, group_weighting: int = 0) -> str:
    """Display name of a label variant, e.g. "il", "il+rl c=0.02", "il+rl c=0.02 lexicographic uniform"."""
    if not uses_rl:
        return "il"
    extras = [name for name, default in ((LABEL_RULES[label_rule], "linear"),
                                         (GROUP_WEIGHTINGS[group_weighting], "margin")) if name != default]
    return " ".join([f"il+rl c={cost_weight:g}", *extras])


def sweep_table(grid: SweepGrid, result: TrainResult, scores: RLScores | None = None) -> list[dict]:
    """Tidy rows, one per configuration: its hyper-parameters, its best dev scores (IL dev labels) and, with RL
    visits, its scores on the held-out groups' RL labels."""
    points = grid_points(grid)
    dev_auroc, dev_loss = np.asarray(result.dev_auroc), np.asarray(result.dev_loss)
    best = np.asarray(result.best_epoch)
    rows = []
    for i in range(len(points.seed)):
        hidden = grid.hidden_sizes[int(points.width_index[i])]
        row = {
            "hidden_sizes": "x".join(map(str, hidden)),
            "learning_rate": float(points.learning_rate[i]),
            "labels": variant_name(bool(points.uses_rl[i]), float(points.cost_weight[i]), int(points.label_rule[i]),
                                   int(points.group_weighting[i])),
            "cost_weight": float(points.cost_weight[i]),
            "label_rule": LABEL_RULES[int(points.label_rule[i])] if points.uses_rl[i] else "",
            "group_weighting": GROUP_WEIGHTINGS[int(points.group_weighting[i])] if points.uses_rl[i] else "",
            "seed": int(points.seed[i]),
            "best_epoch": int(best[i]),
            "epochs_run": int(np.asarray(result.epochs_run)[i]),
            "best_dev_auroc": float(dev_auroc[i, best[i]]) if best[i] >= 0 else float("nan"),
            "best_dev_loss": float(dev_loss[i, best[i]]) if best[i] >= 0 else float("nan"),
        }
        if scores is not None:
            row["heldout_rl_agreement"] = float(np.asarray(scores.heldout_agreement)[i])
            row["heldout_cloud_ratio"] = float(np.asarray(scores.heldout_cloud_ratio)[i])
        rows.append(row)
    return rows


def plot_sweep(rows: list[dict], path, title: str = "Router sweep: best dev AUROC"):
    """PNG of best dev AUROC against learning rate, one line per width (and label source), mean and min-max over
    seeds; with held-out RL scores, a second panel of RL-label agreement against the cloud ratio it costs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    if "labels" not in frame:
        frame["labels"] = "il"
    has_rl = "heldout_rl_agreement" in frame
    fig, axes = plt.subplots(1, 2 if has_rl else 1, figsize=(13 if has_rl else 6.5, 4.5), squeeze=False)
    ax = axes[0, 0]
    # colour = width, line style = label source: readable up to a handful of each
    widths, label_names = list(dict.fromkeys(frame["hidden_sizes"])), list(dict.fromkeys(frame["labels"]))
    styles = ["-", "--", ":", "-."]
    summary = frame.groupby(["labels", "hidden_sizes", "learning_rate"], sort=False)["best_dev_auroc"].agg(
        ["mean", "min", "max"])
    for (labels, hidden), part in summary.groupby(level=[0, 1], sort=False):
        lrs = part.index.get_level_values(-1)
        color = f"C{widths.index(hidden) % 10}"
        style = styles[label_names.index(labels) % len(styles)]
        name = hidden if len(label_names) == 1 else f"{labels}, {hidden}"
        ax.plot(lrs, part["mean"], marker="o", color=color, linestyle=style, label=name)
        ax.fill_between(lrs, part["min"], part["max"], color=color, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("best dev AUROC on IL labels")
    ax.set_title(f"{title}\n(mean, min-max band over {frame['seed'].nunique()} seeds)", fontsize="medium")
    ax.legend(title="hidden sizes" if len(label_names) == 1 else "labels, hidden sizes", fontsize="x-small",
              loc="center left", bbox_to_anchor=(1.0, 0.5))
    if has_rl:
        ax = axes[0, 1]
        for name, part in frame.groupby("labels", sort=False):
            ax.scatter(part["heldout_cloud_ratio"], part["heldout_rl_agreement"], label=name, alpha=0.7)
        ax.set_xlabel("cloud-step ratio on held-out RL visits (threshold 0.5)")
        ax.set_ylabel("agreement with held-out RL preference labels")
        ax.set_title("RL labels of held-out state groups, one point per configuration")
        ax.legend(title="training labels", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
