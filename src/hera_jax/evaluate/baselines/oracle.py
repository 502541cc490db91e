"""Oracle upper bound: the cloud acts exactly where the device would choose a different action.

It asks both agents at every step, so it is not a deployable router; it bounds what step-level routing can reach
at its own cloud-step ratio. Computable wherever both agents can be queried on the same state (stand-ins included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hera_jax.rollout.episode import Choice, Chooser
from hera_jax.state import normalize_action

KNOB = "-"
VALUES = None  # no knob: one point
TITLE = "oracle (upper bound)"


def decide(device_actions: Sequence[str], cloud_actions: Sequence[str]) -> np.ndarray:
    """bool[N]: cloud where the two actions differ after normalising case and whitespace (the IL label)."""
    return np.array([normalize_action(d) != normalize_action(c) for d, c in zip(device_actions, cloud_actions)], bool)


def chooser(param: float, ctx, method: str = "oracle") -> Chooser:
    def choose(state, text, cloud_calls) -> Choice:
        disagree = decide([ctx.device.act(state).action], [ctx.cloud.act(state).action])[0]
        return Choice("cloud" if disagree else "device", "oracle")

    return choose


def unavailable(ctx) -> str | None:
    return None
