"""SwiftSage-style heuristic: the fast (device) agent acts until it stalls, then the slow (cloud) agent steps in.

Stalling = no positive reward for `k` consecutive steps, or the last action was rejected by the environment.
"""

from __future__ import annotations

import numpy as np

from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import COUNT
from hera_jax.rollout.episode import Choice, Chooser

KNOB = "k (steps without reward)"
# the values swept, one frontier point each (evaluate.py --swiftsage-k)
VALUES = Knob(
    "swiftsage_k", (1, 3),
    "SwiftSage heuristic: escalate after this many steps without reward (or an invalid action).",
    COUNT,
)
TITLE = "SwiftSage heuristic"

# Observations environments return for an action they cannot parse or execute.
INVALID_MARKERS = (
    "no known action matches that input",  # ScienceWorld
    "not a valid action",
    "i don't understand",
    "nothing happens",  # ALFWorld
    "unknown action",
)


def steps_since_reward(rewards: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int[B]: steps taken since the last positive reward (all steps when none), over padded histories [B, T]."""
    rewards = np.asarray(rewards, np.float32)
    positions = np.arange(rewards.shape[1])[None, :]
    lengths = np.asarray(lengths)
    rewarded = (rewards > 0) & (positions < lengths[:, None])
    last = np.max(np.where(rewarded, positions, -1), axis=1, initial=-1)  # -1: no reward yet
    return lengths - 1 - last


def escalate(rewards: np.ndarray, lengths: np.ndarray, last_invalid: np.ndarray, k: int) -> np.ndarray:
    """bool[B]: cloud when `k` or more steps passed without reward, or the last action was invalid."""
    return (steps_since_reward(rewards, lengths) >= k) | np.asarray(last_invalid, bool)


def is_invalid(observation: str) -> bool:
    text = observation.lower()
    return any(marker in text for marker in INVALID_MARKERS)


def chooser(k: float, ctx, method: str = "swiftsage") -> Chooser:
    def choose(state, text, cloud_calls) -> Choice:
        rewards = ctx.signals.reward_history()[None, :]
        last_invalid = bool(state.history) and is_invalid(state.history[-1][1])
        go_cloud = escalate(rewards, np.array([rewards.shape[1]]), np.array([last_invalid]), int(k))[0]
        return Choice("cloud" if go_cloud else "device", "swiftsage")

    return choose


def unavailable(ctx) -> str | None:
    return None if ctx.signals is not None else "needs the environment's reward stream"
