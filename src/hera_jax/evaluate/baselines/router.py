"""A trained step-level router (IL, or RL at some iteration): cloud where p_cloud(state) >= threshold."""

from __future__ import annotations

import numpy as np

from hera_jax.rollout.episode import Chooser
from hera_jax.rollout.routing import routed, routes_to_cloud

KNOB = "threshold"
TITLE = "router"


def decide(p_cloud: np.ndarray, threshold: float) -> np.ndarray:
    """bool[N]: the rule `rollout.routing.routed` applies (without exploration)."""
    return np.asarray(routes_to_cloud(np.asarray(p_cloud), threshold))


def chooser(threshold: float, ctx, method: str) -> Chooser:
    return routed(ctx.routers[method], threshold=threshold)


def unavailable(ctx) -> str | None:
    return None
