"""The IL trainer's settings, apart from the trainer (router/train.py) so a command's flags parse without JAX."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, Check


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    hidden_sizes: tuple[int, ...] = (256, 128)
    """Widths of the router MLP's hidden layers."""
    learning_rate: float = 1e-3
    """Peak learning rate of the warmup-cosine schedule."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch_size: int = 256
    """Minibatch size (capped at the number of training states)."""
    max_epochs: int = 60
    """Upper bound on epochs; early stopping usually ends sooner."""
    patience: int = 8
    """Stop after this many epochs without a better dev score."""
    select_metric: str = "dev_auroc"
    """Early-stopping score: 'dev_auroc' (higher is better) or 'dev_loss' (lower is better)."""
    warmup_epochs: int = 2
    """Linear warmup length of the schedule."""
    pos_weight: float | None = None
    """Weight of 'needs cloud' examples in the loss; None = #negatives / #positives of the training set."""
    seed: int = 0
    """PRNG seed for initialisation and shuffling."""

    LIMITS: ClassVar[dict] = {"hidden_sizes": COUNT, "learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE,
                              "batch_size": COUNT, "max_epochs": COUNT, "patience": COUNT,
                              "select_metric": Check(lambda m: None if m in ("dev_auroc", "dev_loss")
                                                     else "must be dev_auroc or dev_loss"),
                              "warmup_epochs": NON_NEGATIVE, "pos_weight": POSITIVE}
