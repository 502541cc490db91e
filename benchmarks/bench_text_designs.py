"""Dev / test / unseen-task AUROC of the IL router per text design (joint / obs_first / segments), over seeds.

For each dataset and design: featurize every state (through the dataset's features cache; missing embeddings are
computed and written there, or under --features-root/<dataset name>), then train the IL router with
router.il.train_and_evaluate for each seed and report mean and standard deviation of the AUROC per split. The
labels come from stand-in agents (gold-path oracle cloud, perturbed-gold device), not LLMs.

    python benchmarks/bench_text_designs.py
    python benchmarks/bench_text_designs.py --datasets data/textworld_express_twc_standin --seeds 0 1 2
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli
from hera_jax.features import TEXT_DESIGNS

SPLITS = ("dev", "test", "test_unseen")


@dataclasses.dataclass(frozen=True)
class BenchTextDesignsConfig:
    """IL router AUROC per text design and seed on collected datasets (STAND-IN agents' labels)."""

    datasets: tuple[Path, ...] = (ROOT / "data" / "scienceworld_standin", ROOT / "data" / "textworld_express_twc_standin")
    designs: tuple[str, ...] = TEXT_DESIGNS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    features_root: Path | None = None
    """Folder holding one features folder per dataset name (default: each dataset's own <dataset>/features)."""
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "text_designs.json"


def main(cfg: BenchTextDesignsConfig) -> dict:
    from hera_jax.dataset import load_il_table
    from hera_jax.features import FeatureSpec
    from hera_jax.router.il import build_features, train_and_evaluate
    from hera_jax.router.train import TrainConfig

    runs, rows = [], []
    for dataset in cfg.datasets:
        table = load_il_table(dataset)
        features_dir = cfg.features_root / Path(dataset).name if cfg.features_root else Path(dataset) / "features"
        for design in cfg.designs:
            spec = FeatureSpec(text_design=design)
            features, num_new = build_features(table, spec, features_dir)
            auroc = {split: [] for split in SPLITS}
            for seed in cfg.seeds:
                _, result, metrics, _ = train_and_evaluate(table, features, TrainConfig(seed=seed), dataset)
                runs.append({"dataset": Path(dataset).name, "design": design, "seed": seed,
                             "best_epoch": int(result.best_epoch), **{s: metrics[s]["auroc"] for s in metrics}})
                for split in SPLITS:
                    auroc[split].append(metrics[split]["auroc"])
            row = {"dataset": Path(dataset).name, "design": design, "input_dim": spec.input_dim,
                   "newly_embedded": num_new, "seeds": list(cfg.seeds)}
            for split in SPLITS:
                row[f"{split}_auroc_mean"] = float(np.mean(auroc[split]))
                row[f"{split}_auroc_std"] = float(np.std(auroc[split], ddof=1)) if len(cfg.seeds) > 1 else 0.0
            rows.append(row)
            print(row, flush=True)
    payload = {"benchmark": "text_designs", "environment": environment(), "rows": rows, "runs": runs,
               "note": "labels from stand-in agents (gold-path oracle cloud, perturbed-gold device), not LLMs"}
    write_json(cfg.out, payload)
    print_table(f"IL router AUROC per text design, mean (std) over seeds {list(cfg.seeds)} (stand-in agents' labels)",
                ["dataset", "design", "input dim", *[f"{s} AUROC" for s in SPLITS]],
                [[r["dataset"], r["design"], str(r["input_dim"]),
                  *[f"{r[f'{s}_auroc_mean']:.4f} ({r[f'{s}_auroc_std']:.4f})" for s in SPLITS]] for r in rows])
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchTextDesignsConfig)
