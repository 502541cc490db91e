"""Random step routing: each step goes to the cloud with a fixed probability (the floor any router must beat)."""

from __future__ import annotations

import numpy as np

from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY
from hera_jax.rollout.episode import Choice, Chooser
from hera_jax.rollout.routing import seeded_uniform

KNOB = "cloud probability"
# the values swept, one frontier point each (evaluate.py --random-rates)
VALUES = Knob(
    "random_rates", (0.3, 0.6),
    "Cloud probabilities of the random step-routing baseline.",
    PROBABILITY,
)
TITLE = "random steps"


def decide(uniforms: np.ndarray, rate: float) -> np.ndarray:
    """bool[N]: cloud where the step's uniform draw is below the rate."""
    return np.asarray(uniforms) < rate


def chooser(rate: float, ctx, method: str = "random") -> Chooser:
    def choose(state, text, cloud_calls) -> Choice:
        # seeded by (seed, task, variation, step, text): reproducible and independent of what ran before
        u = seeded_uniform(ctx.seed, state, text, "random-baseline")
        return Choice("cloud" if decide(np.array([u]), rate)[0] else "device", "random", rate)

    return choose


def unavailable(ctx) -> str | None:
    return None
