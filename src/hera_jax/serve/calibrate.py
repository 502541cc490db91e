"""The threshold for a target cloud-step share, from a dataset's states (RouteLLM's `calibrate`, offline).

The router's p_cloud of every state of the dataset's `--split`, then the (1 - share) quantile; the share the
threshold gives on the other splits is printed beside it, since a threshold holds its share only on traffic like the
one it was calibrated on (`hera-serve --cloud-share` keeps it on live traffic instead).

    python experiments/calibrate.py --checkpoint runs/il/<run>/checkpoint --shares 0.2 0.3 0.5
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hera_jax.limits import PROBABILITY
from hera_jax.serve.budget import share_threshold


@dataclasses.dataclass(frozen=True)
class CalibrateConfig:
    """Print the router threshold that sends a target share of a dataset's steps to the cloud."""

    checkpoint: Path
    shares: tuple[float, ...] = (0.2, 0.3, 0.5)
    """Target cloud-step shares."""
    dataset: Path | None = None
    """Dataset whose states calibrate (default: the one the checkpoint was trained on)."""
    split: str = "dev"
    """Split whose states calibrate (train, dev, test, test_unseen); the others are shown for comparison."""

    LIMITS = {"shares": PROBABILITY}


def calibrate(config: CalibrateConfig) -> dict:
    from rich.console import Console
    from rich.table import Table

    from hera_jax.dataset import load_il_table
    from hera_jax.router.checkpoint import load_router
    from hera_jax.router.il import build_features
    from hera_jax.router.scorer import p_cloud_fn

    bundle = load_router(config.checkpoint)
    dataset = config.dataset or Path((bundle.meta.get("trained_on") or [{}])[0].get("dataset", ""))
    table = load_il_table(dataset, tuple(bundle.meta.get("trained_on", [{}])[0].get("unseen_tasks", ())) or None)
    features, _ = build_features(table, bundle.feature_spec)
    p = np.asarray(p_cloud_fn(tuple(bundle.train_config.hidden_sizes))(bundle.params, features), np.float64)
    splits = [s for s in ("train", "dev", "test", "test_unseen") if table.mask(s).any()]
    if config.split not in splits:
        from hera_jax.errors import HeraError

        raise HeraError(f"{dataset}: no states in split {config.split!r}; it has {', '.join(splits)}")
    rows = []
    for share in config.shares:
        threshold = share_threshold(p[table.mask(config.split)], share)
        rows.append({"share": share, "threshold": threshold,
                     **{f"share_on_{s}": float((p[table.mask(s)] >= threshold).mean()) for s in splits}})
    out = Table(title=f"Thresholds on {dataset} ({config.split}, {int(table.mask(config.split).sum())} states)")
    for column in ("target", "threshold", *splits):
        out.add_column(column, justify="right")
    for r in rows:
        out.add_row(f"{r['share']:g}", f"{r['threshold']:.4f}", *[f"{r[f'share_on_{s}']:.3f}" for s in splits])
    Console().print(out)
    return {"dataset": str(dataset), "split": config.split, "rows": rows}
