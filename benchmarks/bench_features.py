"""Embedding cache hit rate of each router text design (joint / obs_first / segments) on the shipped datasets.

Embedding a dataset in episode order with an empty cache, each state's router input needs some embeddings (joint and
obs_first: one per state; segments: task + current observation + one per history item). The hit rate is the share of
those that an earlier state already needed (found in the cache): 1 - distinct texts / embeddings needed. The distinct
texts are what the encoder must run on. No encoder runs here (pure counting).

    python benchmarks/bench_features.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli

DATASETS = ("scienceworld_standin", "textworld_express_twc_standin", "textworld_express_cookingworld_standin")


@dataclasses.dataclass(frozen=True)
class BenchFeaturesConfig:
    """Count embeddings needed and distinct per text design on collected datasets (STAND-IN agents' data)."""

    datasets: tuple[Path, ...] = tuple(ROOT / "data" / d for d in DATASETS)
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "features.json"


def main(cfg: BenchFeaturesConfig) -> dict:
    from hera_jax.features import TEXT_DESIGNS
    from hera_jax.features.designs import repeat_rate
    from hera_jax.rollout.records import STEPS_FILE, read_steps

    rows = []
    for folder in cfg.datasets:
        steps, _ = read_steps(folder / STEPS_FILE)
        steps.sort(key=lambda r: (r["episode_id"], r["step"]))  # episode order
        texts = [r["state_text"] for r in steps]
        for design in TEXT_DESIGNS:
            rows.append({"dataset": folder.name, "design": design, "states": len(texts), **repeat_rate(texts, design)})
    payload = {"benchmark": "features", "environment": environment(), "rows": rows,
               "note": "datasets collected with stand-in agents (gold-path oracle cloud, perturbed-gold device)"}
    write_json(cfg.out, payload)
    print_table("Embedding cache hit rate per text design, dataset embedded in episode order (stand-in agents' data)",
                ["dataset", "design", "states", "embeddings needed", "distinct (encoded)", "hit rate"],
                [[r["dataset"], r["design"], str(r["states"]), str(r["needed"]), str(r["distinct"]),
                  f"{r['hit_rate']:.3f}"] for r in rows])
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchFeaturesConfig)
