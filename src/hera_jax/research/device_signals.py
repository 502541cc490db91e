"""How well each signal predicts "the device disagrees with the cloud" on a dataset's states: the real device's own
confidence (log-likelihood, max probability, margin, entropy) against a trained router's p_cloud, by AUROC with a
95 % CI (bootstrap over episodes), per split, plus the device's agreement with the cloud by step kind.

    python experiments/device_signals.py --dataset data/textworld_express_twc_gemma270m \
        --routers runs/il/twc_gemma/checkpoint
    python experiments/device_signals.py --dataset data/alfworld_gemma270m \
        --routers text=runs/il/alf_gemma/checkpoint text+logprob=runs/il/alf_gemma_logprob/checkpoint

The array part (`signal_aurocs`, `agreement_by_kind`) takes columns; reading the dataset and the router is
`device_signals` at the edge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: the command's flags parse without it
    import pandas as pd

from hera_jax.dataset import load_il_table
from hera_jax.errors import HeraError
from hera_jax.files import write_json_atomic
from hera_jax.rollout.records import STEPS_FILE, read_steps

# the device's signals: name -> (StepTable.device_signals column, sign that makes "higher = more likely to need
# the cloud"); routers' p_cloud come first, as "router NAME" (a bare checkpoint: "router p_cloud")
DEVICE_SIGNAL_SCORES = {"device -logprob": ("device_logprob", -1.0), "device -p_top": ("device_p_top", -1.0),
                        "device -margin": ("device_margin", -1.0), "device entropy": ("device_entropy", 1.0)}


@dataclasses.dataclass(frozen=True)
class DeviceSignalsConfig:
    """AUROC of the device's confidence signals and a router's p_cloud for "needs cloud" on a dataset's states."""

    dataset: Path
    """A dataset collected with a device that reports confidence (--agents.device gguf-score)."""
    routers: tuple[str, ...] = ()
    """IL checkpoints trained on this dataset, as CHECKPOINT_DIR or NAME=CHECKPOINT_DIR: each one's p_cloud is
    compared on the same states (paired resamples). None: the device's signals only."""
    resamples: int = 2000
    seed: int = 0
    out: Path | None = None
    """JSON report (default: <dataset>/device_signals.json)."""


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half; NaN when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def signal_aurocs(scores: dict[str, np.ndarray], labels: np.ndarray, episodes: np.ndarray, resamples: int,
                  seed: int) -> dict[str, dict[str, float]]:
    """Per signal: AUROC and a percentile 95 % CI from resampling whole episodes (states of an episode are
    correlated); every signal sees the same resamples, so their differences are paired."""
    rng = np.random.default_rng(seed)
    ids, rows_of = np.unique(episodes, return_inverse=True)
    members = [np.flatnonzero(rows_of == i) for i in range(len(ids))]
    draws = [np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))]) for _ in range(resamples)]
    out, boots = {}, {}
    for name, score in scores.items():
        boots[name] = np.array([auroc(score[d], labels[d]) for d in draws])
        low, high = np.nanpercentile(boots[name], [2.5, 97.5])
        out[name] = {"auroc": auroc(score, labels), "low": float(low), "high": float(high)}
    return out, boots


def paired_differences(aurocs: dict[str, dict[str, float]], boots: dict[str, np.ndarray],
                       firsts: list[str]) -> dict[str, dict[str, float]]:
    """AUROC of each signal in `firsts` minus every other signal's, with a 95 % CI from the same resamples."""
    out = {}
    for first in firsts:
        for other in aurocs:
            if other == first:
                continue
            low, high = np.nanpercentile(boots[first] - boots[other], [2.5, 97.5])
            out[f"{first} - {other}"] = {"difference": aurocs[first]["auroc"] - aurocs[other]["auroc"],
                                         "low": float(low), "high": float(high)}
    return out


def step_kind(action: str) -> str:
    """The verb of an action ("put", "take", "open", "move", "look", ...)."""
    words = action.strip().lower().split()
    return words[0] if words else ""


def agreement_by_kind(cloud_actions: pd.Series, needs_cloud: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({"kind": cloud_actions.map(step_kind), "agree": ~np.asarray(needs_cloud, bool)})
    return frame.groupby("kind").agree.agg(["size", "mean"]).rename(columns={"size": "states", "mean": "agreement"})


def device_signals(config: DeviceSignalsConfig) -> dict:
    import pandas as pd

    table = load_il_table(config.dataset)
    if np.isnan(table.device_signals["device_p_top"]).all():
        raise HeraError(f"{config.dataset}: its device reports no confidence (collect with --agents.device "
                        "gguf-score)")
    entries = [_router_entry(item) for item in config.routers]
    routers = dict(entries)
    if len(routers) < len(entries):
        raise HeraError("--routers: give each checkpoint its own NAME (NAME=CHECKPOINT_DIR) when comparing several")
    scores: dict[str, np.ndarray] = {}  # signal -> float64 per row, higher = more likely to need the cloud
    if routers:
        from hera_jax.router.checkpoint import load_router
        from hera_jax.router.il import build_features
        from hera_jax.router.scorer import p_cloud_fn

        for name, path in routers.items():
            bundle = load_router(path)
            features, _ = build_features(table, bundle.feature_spec)
            scores[f"router {name}" if name else "router p_cloud"] = np.asarray(
                p_cloud_fn(tuple(bundle.train_config.hidden_sizes))(bundle.params, features), np.float64)
    for name, (column, sign) in DEVICE_SIGNAL_SCORES.items():
        scores[name] = sign * table.device_signals[column].astype(np.float64)
    report: dict = {"dataset": str(config.dataset), "routers": {k or "router": str(v) for k, v in routers.items()},
                    "label": "needs cloud = the device's action differs from the cloud's (IL label)",
                    "agents": table.manifest.get("agents"), "splits": {}}
    for split in ("train", "dev", "test", "test_unseen"):
        mask = table.mask(split)
        if not mask.any():
            continue
        aurocs, boots = signal_aurocs({name: score[mask] for name, score in scores.items()}, table.label[mask],
                                      table.episode_id[mask], config.resamples, config.seed)
        report["splits"][split] = {
            "states": int(mask.sum()), "needs_cloud_rate": float(table.label[mask].mean()), "auroc": aurocs,
            "paired_differences": paired_differences(aurocs, boots, [n for n in aurocs if n.startswith("router")]),
        }
    # the cloud's actions, for agreement by step kind: the one column the training table does not hold
    rows, _ = read_steps(Path(config.dataset) / STEPS_FILE)
    cloud_action = pd.DataFrame(rows).set_index(["episode_id", "step"])["cloud_action"]
    kinds = agreement_by_kind(cloud_action.loc[pd.MultiIndex.from_arrays([table.episode_id, table.step])]
                              .reset_index(drop=True), table.label)
    report["agreement_by_kind"] = {k: {"states": int(r.states), "agreement": float(r.agreement)}
                                   for k, r in kinds.iterrows()}
    report["agreement"] = float(1 - table.label.mean())
    out = config.out or Path(config.dataset) / "device_signals.json"
    write_json_atomic(out, report)
    _print(report, out)
    return report


def _router_entry(item: str) -> tuple[str, Path]:
    """'NAME=DIR' -> (NAME, DIR); a bare 'DIR' -> ('', DIR)."""
    name, sep, path = item.partition("=")
    return (name, Path(path)) if sep else ("", Path(item))


def _print(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="AUROC for 'needs cloud' (95 % CI, episodes resampled)")
    table.add_column("split")
    table.add_column("states", justify="right")
    names = list(next(iter(report["splits"].values()))["auroc"])
    for name in names:
        table.add_column(name, justify="right")
    for split, numbers in report["splits"].items():
        table.add_row(split, str(numbers["states"]), *[
            f"{numbers['auroc'][n]['auroc']:.3f} [{numbers['auroc'][n]['low']:.2f}, {numbers['auroc'][n]['high']:.2f}]"
            for n in names])
    console.print(table)
    for split, numbers in report["splits"].items():
        if split == "train" or not numbers["paired_differences"]:
            continue
        diffs = Table(title=f"{split}: paired AUROC differences (95 % CI)")
        for column in ("signals", "difference", "95 % CI"):
            diffs.add_column(column)
        for pair, d in numbers["paired_differences"].items():
            diffs.add_row(pair, f"{d['difference']:+.3f}", f"[{d['low']:+.3f}, {d['high']:+.3f}]")
        console.print(diffs)
    kinds = Table(title=f"Device agrees with the cloud on {report['agreement']:.1%} of states; by step kind")
    for column in ("kind", "states", "agreement"):
        kinds.add_column(column)
    for kind, numbers in sorted(report["agreement_by_kind"].items(), key=lambda kv: -kv[1]["states"]):
        kinds.add_row(kind, str(numbers["states"]), f"{numbers['agreement']:.1%}")
    console.print(kinds)
    console.print(f"wrote {out}")


__all__ = ["DeviceSignalsConfig", "agreement_by_kind", "auroc", "device_signals", "paired_differences", "signal_aurocs"]
