"""Hyper-parameter sweeps of the router as ONE compiled program.

Every configuration of a grid (seeds x learning rates x hidden widths x label sources / RL cost weights) trains
inside a single `jax.vmap` of the ordinary trainer (`make_train`):

- seeds and learning rates are plain vmapped arguments of `train(rng, data, learning_rate, init_params)`;
- hidden widths share shapes through zero padding: each configuration is initialised at its own width (exactly as a
  separate run would be) and its weights are zero-padded to the grid's widest layers. A padded unit has zero
  weights in and out, so its pre-activation is 0, gelu(0) = 0, its gradients are exactly 0 and AdamW never moves it:
  the padded network computes the narrow one and trains exactly like it (up to the order of float sums);
- label sources share shapes too: every configuration trains on the same rows [IL training states; RL visits] and
  differs only in its per-row targets and weights, computed inside the program (`label_targets`: the IL labels, or
  the RL stage's grouped preferences at the configuration's cost weight). Groups of identical states held out of
  training then score every configuration on the RL labels (`score_heldout`).

So 64 configurations cost one compile and, on an accelerator, about the wall time of a few single runs. With a
`config_mesh` the configurations are spread over the devices (TPU cores, GPUs), each device training its share.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hera_jax.labels import group_preferences
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE
from hera_jax.router.model import RouterMLP
from hera_jax.router.rl_loss import PreferenceRows, preference_targets
from hera_jax.router.sharding import CONFIG_AXIS
from hera_jax.router.train import (TrainConfig, TrainData, TrainResult, auto_pos_weight, init_router_params,
                                   make_train)


LABEL_SOURCES = ("il", "il+rl")


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    """PRNG seeds (initialisation and minibatch order)."""
    learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    """Peak learning rates of the warmup-cosine schedule."""
    hidden_sizes: tuple[tuple[int, ...], ...] = ((32, 16), (64, 32), (128, 64), (256, 128))
    """Hidden-layer widths; all entries need the same depth (they are zero-padded to the widest)."""
    label_sources: tuple[Literal["il", "il+rl"], ...] = ("il",)
    """Training labels: 'il' = IL labels only; 'il+rl' = the RL stage's grouped preferences (one variant per
    --cost-weights entry) over IL labels, as in experiments/rl_iter.py's loss. 'il+rl' needs RL rollouts."""
    cost_weights: tuple[float, ...] = (0.02,)
    """RL cost weights swept by the 'il+rl' label source (price of one cloud call in units of return)."""

    LIMITS: ClassVar[dict] = {"learning_rates": POSITIVE, "hidden_sizes": COUNT, "cost_weights": NON_NEGATIVE}


class SweepPoint(NamedTuple):
    """The grid as flat columns, one entry per configuration (product order: widths, learning rates, label
    variants, seeds). IL-only configurations have no cost weight (NaN): it would not change their training."""

    width_index: np.ndarray  # int[C] index into grid.hidden_sizes
    learning_rate: np.ndarray  # float[C] (float32 on the device)
    seed: np.ndarray  # int[C]
    uses_rl: np.ndarray  # bool[C] trained on IL+RL labels
    cost_weight: np.ndarray  # float[C] NaN for IL-only


def label_variants(grid: SweepGrid) -> list[tuple[bool, float]]:
    unknown = set(grid.label_sources) - set(LABEL_SOURCES)
    if unknown:
        raise ValueError(f"label_sources must be among {LABEL_SOURCES}, got {sorted(unknown)}")
    variants = [(False, float("nan"))] if "il" in grid.label_sources else []
    if "il+rl" in grid.label_sources:
        if not grid.cost_weights:
            raise ValueError("label source 'il+rl' needs at least one cost weight")
        variants += [(True, float(c)) for c in grid.cost_weights]
    return variants


def grid_points(grid: SweepGrid) -> SweepPoint:
    rows = list(itertools.product(range(len(grid.hidden_sizes)), grid.learning_rates, label_variants(grid), grid.seeds))
    if not rows:
        raise ValueError("the sweep grid is empty: give at least one seed, learning rate, width and label source")
    w, lr, variant, s = zip(*rows)
    uses_rl, cost = zip(*variant)
    return SweepPoint(np.asarray(w, np.int32), np.asarray(lr, np.float64), np.asarray(s, np.int64),
                      np.asarray(uses_rl, bool), np.asarray(cost, np.float64))


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
    """RL visits for the 'il+rl' label source. They are the LAST V rows of TrainData.x_train (its first rows are
    the IL training states, whose TrainData.y_train holds their IL labels; y_train of visit rows is ignored)."""

    group: jax.Array  # int[V] dense group of identical states, 0..G-1
    chose_cloud: jax.Array  # bool[V] the visit was routed to the cloud
    returns: jax.Array  # float[V] return estimate after the routing choice
    future_calls: jax.Array  # float[V] cloud calls from the visit on (estimate, this one included)
    il_group: jax.Array  # int[N_il] group of each IL training row's state; -1 = never visited
    heldout: jax.Array  # bool[G] groups kept out of training and scored after it


class RLScores(NamedTuple):
    """Per configuration, on the visits of held-out valid groups (labels at the sweep's scoring cost weight)."""

    heldout_agreement: jax.Array  # float[C] margin-weighted share of groups whose label the router predicts
    heldout_cloud_ratio: jax.Array  # float[C] share of held-out visits the router sends to the cloud


def label_targets(y_il: jax.Array, rl: RLRows, num_groups: int, uses_rl: jax.Array, cost_weight: jax.Array,
                  il_weight: float, il_pos_weight: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(y int[N], w float[N], pos_weight) of one label variant over the rows [IL training states; RL visits].

    IL-only: the IL labels with weight 1 (0 on states of held-out groups), visits weight 0, positives balanced by
    #negatives / #positives (the IL stage). IL+RL: the grouped-preference targets and weights of router/rl_loss.py at `cost_weight`, with held-out
    groups treated as unlabelled and no extra class weight (the weights already carry the IL balance), so the loss
    is exactly the RL stage's. Pure jnp: vmapped over (uses_rl, cost_weight) it labels every variant at once.
    """
    num_il, num_visits = rl.il_group.shape[0], rl.group.shape[0]
    label, margin, valid = group_preferences(rl.group, rl.chose_cloud, rl.returns, rl.future_calls, num_groups,
                                             cost_weight)
    # IL rows of held-out states are dropped too, so no variant has seen a scored state in training.
    il_kept = ~((rl.il_group >= 0) & rl.heldout[jnp.clip(rl.il_group, 0, num_groups - 1)])
    rows = PreferenceRows(
        group=jnp.concatenate([rl.il_group, rl.group]),
        is_visit=jnp.concatenate([jnp.zeros(num_il, bool), jnp.ones(num_visits, bool)]),
        il_label=jnp.concatenate([y_il[:num_il], jnp.zeros(num_visits, y_il.dtype)]),
        il_known=jnp.concatenate([il_kept, jnp.zeros(num_visits, bool)]),
    )
    rl_target, rl_weight = preference_targets(rows, label, margin, valid & ~rl.heldout, il_weight, il_pos_weight)
    il_weight_rows = rows.il_known.astype(jnp.float32)
    y = jnp.where(uses_rl, rl_target.astype(jnp.int32), rows.il_label.astype(jnp.int32))
    w = jnp.where(uses_rl, rl_weight, il_weight_rows)
    pos_weight = jnp.where(uses_rl, 1.0, auto_pos_weight(rows.il_label, il_weight_rows))
    return y, w, pos_weight


def score_heldout(model: RouterMLP, params: dict, x_visits: jax.Array, rl: RLRows, num_groups: int,
                  cost_weight: float, threshold: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """(agreement, cloud ratio) of one router on the held-out groups' visits, labels at `cost_weight`."""
    label, margin, valid = group_preferences(rl.group, rl.chose_cloud, rl.returns, rl.future_calls, num_groups,
                                             cost_weight)
    scored = (valid & rl.heldout)[rl.group]
    visits_per_group = jax.ops.segment_sum(scored.astype(jnp.float32), rl.group, num_groups)
    weight = jnp.where(scored, margin[rl.group] / jnp.maximum(visits_per_group[rl.group], 1.0), 0.0)
    to_cloud = jax.nn.sigmoid(model.apply({"params": params}, x_visits)) >= threshold
    agree = jnp.sum(weight * (to_cloud == (label[rl.group] > 0))) / jnp.maximum(jnp.sum(weight), 1e-12)
    cloud_ratio = jnp.sum(scored * to_cloud) / jnp.maximum(jnp.sum(scored), 1)
    # No held-out margin at all (e.g. every held-out group is a tie): agreement is undefined.
    return jnp.where(jnp.sum(weight) > 0, agree, jnp.nan), cloud_ratio


def make_sweep(base: TrainConfig, grid: SweepGrid, num_train: int, mesh: Mesh | None = None,
               il_weight: float = 1.0, score_cost_weight: float = 0.02):
    """`sweep(data, rl=None) -> (TrainResult, RLScores | None)` with a leading axis over `grid_points(grid)`; jit it
    once for the whole grid.

    `mesh` (router/sharding.py's `config_mesh`) spreads the configurations over its devices (TPU cores, GPUs): the
    grid is padded to a multiple of the device count with copies of its last configuration, which are cut off
    again. Parameters come back zero-padded to the widest layers; `unpad_params` cuts one configuration's out.
    With `rl` (label source 'il+rl'), the last V training rows are RL visits, see `RLRows`.
    """
    points = grid_points(grid)
    num_configs = len(points.seed)
    devices = 1 if mesh is None else mesh.size
    take = np.minimum(np.arange(-(-num_configs // devices) * devices), num_configs - 1)  # pad with the last config
    wide = dataclasses.replace(base, hidden_sizes=padded_widths(grid.hidden_sizes))
    train = make_train(wide, num_train, skip_stopped_epochs=False)  # see make_train: cond under vmap copies data
    model = RouterMLP(wide.hidden_sizes)

    def spread(tree):
        if mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec(CONFIG_AXIS)))

    def sweep(data: TrainData, rl: RLRows | None = None) -> tuple[TrainResult, RLScores | None]:
        if rl is None and points.uses_rl.any():
            raise ValueError("label source 'il+rl' needs RL visits (rl=RLRows)")
        seeds, lrs = jnp.asarray(points.seed[take]), jnp.asarray(points.learning_rate[take], jnp.float32)
        rngs = jax.vmap(jax.random.key)(seeds)
        example = data.x_train[:1]
        wide_shapes = jax.eval_shape(lambda r: init_router_params(wide.hidden_sizes, r, example), rngs[0])
        # One vmapped init per width group (a handful of static shapes), each padded, then back in grid order.
        init_by_width = [
            jax.vmap(lambda r, h=hidden: pad_params(init_router_params(h, r, example), wide_shapes))(rngs)
            for hidden in grid.hidden_sizes
        ]
        init_params = jax.tree.map(
            lambda *per_width: jnp.stack(per_width)[jnp.asarray(points.width_index[take]), jnp.arange(len(take))],
            *init_by_width,
        )
        if rl is None:
            args = spread((rngs, lrs, init_params))
            result = jax.vmap(lambda r, lr, p: train(r, data, lr, p))(*args)
            return jax.tree.map(lambda a: a[:num_configs], result), None
        num_groups = rl.heldout.shape[0]
        num_il = rl.il_group.shape[0]
        y_il = data.y_train[:num_il]
        il_pos_weight = auto_pos_weight(y_il, jnp.ones(num_il, jnp.float32))
        uses_rl = jnp.asarray(points.uses_rl[take])
        cost = jnp.asarray(np.nan_to_num(points.cost_weight[take]), jnp.float32)
        labels = jax.vmap(lambda use, c: label_targets(y_il, rl, num_groups, use, c, il_weight, il_pos_weight))(
            uses_rl, cost)

        def train_one(r, lr, p, y, w, pos_weight):
            result = train(r, data._replace(y_train=y, w_train=w), lr, p, pos_weight)
            x_visits = data.x_train[num_il:]
            scores = score_heldout(model, result.params, x_visits, rl, num_groups, score_cost_weight)
            return result, RLScores(*scores)

        result, scores = jax.vmap(train_one)(*spread((rngs, lrs, init_params, *labels)))
        return jax.tree.map(lambda a: a[:num_configs], (result, scores))

    return sweep


def unpad_params(padded: dict, hidden_sizes: tuple[int, ...], input_dim: int) -> dict:
    """One configuration's parameters at its own width (for saving or `predict_p_cloud`)."""
    shapes = jax.eval_shape(lambda r: init_router_params(hidden_sizes, r, jnp.zeros((1, input_dim))), jax.random.key(0))
    return jax.tree.map(lambda leaf, s: leaf[tuple(slice(0, n) for n in s.shape)], padded, shapes)


def label_name(uses_rl: bool, cost_weight: float) -> str:
    return f"il+rl c={cost_weight:g}" if uses_rl else "il"


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
            "labels": label_name(bool(points.uses_rl[i]), float(points.cost_weight[i])),
            "cost_weight": float(points.cost_weight[i]),
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
