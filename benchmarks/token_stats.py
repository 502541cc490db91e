"""Token counts of the router's state texts and how often the encoder's window cuts off the current observation.

all-MiniLM-L6-v2 reads at most 256 tokens ([CLS] and [SEP] included) and drops the rest. Per dataset: the token
count of the state texts (every step, [CLS]/[SEP] included: mean, p95, max) and, per text design, the share of states
whose current observation is not fully inside the window (tokenizer offsets; hera_jax.features.tokens).

    python benchmarks/token_stats.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli

DATASETS = ("scienceworld_standin", "textworld_express_twc_standin", "textworld_express_cookingworld_standin")


@dataclasses.dataclass(frozen=True)
class TokenStatsConfig:
    """Token statistics of the state texts of collected datasets (STAND-IN agents' data) per text design."""

    datasets: tuple[Path, ...] = tuple(ROOT / "data" / d for d in DATASETS)
    encoder: str = "all-MiniLM-L6-v2"
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "token_stats.json"


def main(cfg: TokenStatsConfig) -> dict:
    from hera_jax.features import TEXT_DESIGNS
    from hera_jax.features.tokens import load_tokenizer, observation_cut, token_counts
    from hera_jax.rollout.records import STEPS_FILE, read_steps

    tokenizer, max_seq_length = load_tokenizer(cfg.encoder)
    rows = []
    for folder in cfg.datasets:
        steps, _ = read_steps(folder / STEPS_FILE)
        texts = [r["state_text"] for r in steps]
        counts = token_counts(tokenizer, texts)
        row = {"dataset": folder.name, "states": len(texts), "mean_tokens": float(counts.mean()),
               "p95_tokens": float(np.percentile(counts, 95)), "max_tokens": int(counts.max()),
               "over_window": float((counts > max_seq_length).mean())}
        for design in TEXT_DESIGNS:
            row[f"observation_cut_{design}"] = float(observation_cut(tokenizer, texts, design, max_seq_length).mean())
        rows.append(row)
    payload = {"benchmark": "token_stats", "encoder": cfg.encoder, "max_seq_length": max_seq_length,
               "environment": environment(), "rows": rows,
               "note": "datasets collected with stand-in agents (gold-path oracle cloud, perturbed-gold device)"}
    write_json(cfg.out, payload)
    print_table(f"State-text tokens ({cfg.encoder}, window {max_seq_length} incl. [CLS]/[SEP]) and share of states "
                "whose current observation is cut off, per text design (stand-in agents' data)",
                ["dataset", "states", "mean", "p95", "max", f"> {max_seq_length}",
                 *[f"obs cut: {d}" for d in TEXT_DESIGNS]],
                [[r["dataset"], str(r["states"]), f"{r['mean_tokens']:.1f}", f"{r['p95_tokens']:.0f}",
                  str(r["max_tokens"]), f"{r['over_window']:.3f}",
                  *[f"{r[f'observation_cut_{d}']:.3f}" for d in TEXT_DESIGNS]] for r in rows])
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, TokenStatsConfig)
