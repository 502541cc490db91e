"""The IL command's one config (experiments/il.py), apart from its code so the flags parse without JAX."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from hera_jax.compile_cache import DEFAULT_DIR as DEFAULT_COMPILE_CACHE
from hera_jax.dataset import DataConfig
from hera_jax.features import FeatureSpec
from hera_jax.limits import PROBABILITY
from hera_jax.router.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class ILConfig(DataConfig):
    """Train the IL router (Hera stage 1) on a collected dataset. States missing from --features-dir are embedded
    into it. With --extra-datasets, --features-dir applies to the first dataset only and each dataset keeps its own
    unseen tasks unless --unseen-tasks names them."""

    extra_datasets: tuple[str, ...] = ()
    """More datasets to train the same router on, as folders or environment names of shipped datasets (e.g.
    textworld_express:twc). Each keeps its own splits, IL labels, unseen tasks and features cache
    (<dataset>/features); their state format (history_k, max_obs_chars) and agents must match."""
    features: FeatureSpec = FeatureSpec()
    """How states become the router's input: encoder, embedding size, scalar features, text design."""
    train: TrainConfig = TrainConfig()
    """Router and optimiser settings."""
    threshold: float = 0.5
    """p(cloud) at or above which a state is routed to the cloud in the reported metrics."""
    data_parallel: bool = True
    """With several local devices (TPU cores, GPUs), split every minibatch over all of them (jax.sharding Mesh)."""
    compile_cache: Path | None = DEFAULT_COMPILE_CACHE
    """Persistent XLA compile cache folder (a second run skips compiling); None turns it off."""
    out: Path | None = None
    """New run folder for metrics.json and the checkpoint (default: runs/il/<timestamp>). Must not exist yet."""

    LIMITS: ClassVar[dict] = {"threshold": PROBABILITY}
