"""The sweep command's one config (experiments/sweep.py) and its grid, apart from the sweep's code so the flags parse
without JAX."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from hera_jax.compile_cache import DEFAULT_DIR as DEFAULT_COMPILE_CACHE
from hera_jax.dataset import DataConfig
from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, Range
from hera_jax.router.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    """PRNG seeds (initialisation and minibatch order)."""
    learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    """Peak learning rates of the warmup-cosine schedule."""
    hidden_sizes: tuple[tuple[int, ...], ...] = ((32, 16), (64, 32), (128, 64), (256, 128))
    """Hidden-layer widths; all entries need the same depth (they are zero-padded to the widest, and narrow ones share
    a network side by side)."""
    label_sources: tuple[Literal["il", "il+rl"], ...] = ("il",)
    """Training labels: 'il' = IL labels only; 'il+rl' = the RL stage's grouped preferences (one variant per
    --cost-weights entry) over IL labels, as in experiments/rl_iter.py's loss. 'il+rl' needs RL rollouts."""
    cost_weights: tuple[float, ...] = (0.02,)
    """RL cost weights swept by the 'il+rl' label source (price of one cloud call in units of return)."""
    label_rules: tuple[Literal["linear", "lexicographic"], ...] = ("linear",)
    """RL label rules swept by 'il+rl' (RLConfig.preference.rule)."""
    group_weightings: tuple[Literal["margin", "uniform", "class_balanced"], ...] = ("margin",)
    """RL group weightings swept by 'il+rl' (RLConfig.preference.group_weighting)."""
    return_tolerance: float = 0.0
    """Return tolerance of the 'lexicographic' rule (RLConfig.preference.return_tolerance)."""

    LIMITS: ClassVar[dict] = {"learning_rates": POSITIVE, "hidden_sizes": COUNT, "cost_weights": NON_NEGATIVE,
                              "return_tolerance": NON_NEGATIVE}


@dataclasses.dataclass(frozen=True)
class SweepConfig(DataConfig):
    """Sweep the router over seeds x learning rates x hidden widths (x IL-only / IL+RL labels x RL cost weights)
    in one compiled program. States missing from --features-dir are embedded into it."""

    features: FeatureSpec = FeatureSpec()
    """How states become the router's input: encoder, embedding size, scalar features, text design."""
    grid: SweepGrid = SweepGrid()
    train: TrainConfig = TrainConfig()
    """The trainer's other settings (epochs, batch size, patience, ...); its hidden sizes, learning rate and seed come
    from --grid, so --train.hidden-sizes, --train.learning-rate and --train.seed are refused here."""
    rl_run: Path | None = None
    """Run folder of experiments/rl_iter.py on the same dataset: its exploration rollouts (all finished iterations)
    are the RL visits of the 'il+rl' label source and of the held-out RL scores. Required for 'il+rl'."""
    heldout_groups_percent: int = 25
    """Share of the RL run's state groups (by a hash of the state key) kept out of training and used for scoring."""
    il_weight: float = 1.0
    """Weight of the IL part against the RL part in the 'il+rl' loss (rl/loss.py). rl_iter.py fine-tunes an
    IL router with 0.2; a sweep trains from scratch, so both parts weigh the same by default."""
    score_cost_weight: float | None = None
    """Cost weight of the held-out scoring preferences (default: the RL run's --preference.cost-weight)."""
    spread_configs: bool = True
    """With several local devices, spread the configurations over them (one config mesh; see router/sharding.py)."""
    compile_cache: Path | None = DEFAULT_COMPILE_CACHE
    """Persistent XLA compile cache folder (a second run skips compiling); None turns it off."""
    out: Path | None = None
    """New run folder (default: runs/sweep/<timestamp>). Must not exist yet."""

    def __post_init__(self):
        # checked with the flags (before the sweep's modules load): the grid's values replace these
        grid_flags = {"hidden_sizes": "--grid.hidden-sizes.0 ...", "learning_rate": "--grid.learning-rates",
                      "seed": "--grid.seeds"}
        for field, grid_flag in grid_flags.items():
            if getattr(self.train, field) != getattr(TrainConfig(), field):
                raise HeraError(f"--train.{field.replace('_', '-')} is set by the grid in a sweep; use {grid_flag}")
        if "il+rl" in self.grid.label_sources and self.rl_run is None:
            raise HeraError("--grid.label-sources il+rl needs --rl-run (a run folder of experiments/rl_iter.py)")

    LIMITS: ClassVar[dict] = {"heldout_groups_percent": Range(1, 99),
                              "il_weight": NON_NEGATIVE, "score_cost_weight": NON_NEGATIVE}
