"""One stage-2 (RL) fine-tune on a large dataset, timed phase by phase (`bench_end_to_end.py` runs it in a child
process for its peak RSS; it can also run alone).

Stage 2 normally fine-tunes on routed rollouts, which a large dataset made by `make_large_dataset.py` does not
have. Here the dataset's own episodes stand in for them: every step is read back as a routed visit whose actor
(cloud or device) is drawn at random (seeded, `--cloud-share`), so identical states recur across episodes and
get grouped as in a real run, and the returns are those of the recorded episodes. The labels are therefore
STAND-IN labels: this measures what the stage costs at scale, not what it learns. Everything after the rows is the
RL loop's own code (`rl/loop.py`: `preference_set`, `fine_tune`; `save_router`); the visits are read as the loop
reads an iteration's rollouts (`load_step_columns`, `visit_table_from_columns`), timed twice: the first read
validates every row into a fresh columns cache, a later one reads that cache. Not timed: the rollouts
themselves (simulator-bound, `bench_rollout.py`) and the held-out evaluation (rollouts too).

    python benchmarks/rl_finetune_once.py --dataset /tmp/hera_e2e/dataset_100k \\
        --checkpoint /tmp/hera_e2e/il_100k_warm/checkpoint --out /tmp/hera_e2e/rl_100k.json
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hera_jax.cli import run_cli
from hera_jax.columns import load_step_columns
from hera_jax.dataset import load_il_table
from hera_jax.errors import HeraError
from hera_jax.rl.config import RLConfig
from hera_jax.rl.loop import fine_tune, preference_set
from hera_jax.rl.run import ILData
from hera_jax.rl.run import ROLLOUT_COLUMNS_FILE
from hera_jax.rl.visits import visit_table_from_columns
from hera_jax.rollout.records import STEPS_FILE, existing_steps_file
from hera_jax.router.checkpoint import load_router, save_router
from hera_jax.router.scorer import RouterScorer, StateEmbedder


@dataclasses.dataclass(frozen=True)
class RLFineTuneOnceConfig:
    """Time one RL fine-tune on a dataset's steps replayed as STAND-IN routed visits."""

    dataset: Path
    """A dataset whose features caches cover every state (e.g. from make_large_dataset.py)."""
    checkpoint: Path
    """The IL router to fine-tune (il.py's `checkpoint` folder, trained on the same dataset)."""
    out: Path
    """JSON file for the phase timings."""
    cloud_share: float = 0.5
    """Share of visits drawn as routed to the cloud."""
    seed: int = 0
    rl: RLConfig = RLConfig()
    """The RL stage's settings (preference labels, fine-tune epochs, IL weight); only those the fine-tune reads."""


def _no_encoder(texts):
    raise HeraError(f"{len(texts)} state(s) are missing from the dataset's features cache; this benchmark embeds "
                    "nothing (make the dataset with make_large_dataset.py)")


def main(config: RLFineTuneOnceConfig) -> dict:
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    bundle = load_router(config.checkpoint)
    spec = bundle.feature_spec
    features_dir = config.dataset / "features"
    table = load_il_table(config.dataset)
    il, _ = ILData.featurize(table, spec, features_dir, _no_encoder)
    lap("load_il_data")
    with tempfile.TemporaryDirectory() as scratch:
        # as the RL loop reads an iteration's rollouts: validated into a fresh columns cache the first time (the
        # iteration that made them), from that cache at every later iteration that pools them
        steps, cache = existing_steps_file(config.dataset / STEPS_FILE), Path(scratch) / ROLLOUT_COLUMNS_FILE
        load_step_columns(steps, cache)
        lap("read_visits_first")
        columns, _ = load_step_columns(steps, cache)
        draw = np.random.default_rng(config.seed).random(len(columns["step"])) < config.cloud_share
        visits = visit_table_from_columns({**columns, "cloud_acted": draw}, config.rl.preference.return_kind)
        lap("read_visits")
        scorer = RouterScorer(bundle, StateEmbedder(spec, features_dir, encode=_no_encoder))
        prepared = preference_set(config.rl, scorer, il, visits)
        lap("labels_and_visit_features")
        tuned = fine_tune(config.rl, bundle, prepared.data, prepared.num_visits, iteration=1)
        lap("fine_tune_incl_compile")
        save_router(Path(scratch) / "checkpoints", 1, tuned.params, bundle.train_config, spec, {"benchmark": True})
        lap("checkpoint")
    result = {"visits": prepared.num_visits, "rows": int(prepared.data.x.shape[0]), "groups": prepared.stats["groups"],
              "phases_s": phases, "total_s": sum(phases.values()), "train_stats": tuned.stats,
              "labels": "STAND-IN: the dataset's steps as routed visits, actors drawn at random"}
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "train_stats"}, indent=1))
    return result


if __name__ == "__main__":
    run_cli(main, RLFineTuneOnceConfig)
