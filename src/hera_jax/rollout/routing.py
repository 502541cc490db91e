"""Choosers that let a router (or a baseline) pick who acts at each step, with seeded exploration for RL.

A router here is any `p_cloud_fn(state, state_text, cloud_calls_so_far) -> float`. Exploration randomness is a hash
of (seed, task, variation, step, state text), so a rollout is reproducible and independent of worker scheduling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from hera_jax.rollout.episode import Choice, Chooser
from hera_jax.state import AgentState

PCloudFn = Callable[[AgentState, str, int], float]


def routes_to_cloud(p_cloud, threshold):
    """The routing rule everywhere (engine, evaluation, sweep, proxy): cloud when p_cloud >= threshold. Works on
    Python floats, numpy and jax arrays."""
    return p_cloud >= threshold


def seeded_uniform(seed: int, state: AgentState, text: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x1f{seed}\x1f{state.task}\x1f{state.variation}\x1f{state.step}\x1f{text}".encode())
    return int.from_bytes(digest.digest()[:8], "little") / 2**64


def routed(
    p_cloud_fn: PCloudFn,
    threshold: float = 0.5,
    epsilon: float = 0.0,
    sample: bool = False,
    seed: int = 0,
) -> Chooser:
    """Cloud when p_cloud >= threshold; with probability `epsilon` the choice is flipped (exploration), or with
    `sample=True` the actor is drawn from Bernoulli(p_cloud)."""

    def choose(state: AgentState, text: str, cloud_calls: int) -> Choice:
        p = float(p_cloud_fn(state, text, cloud_calls))
        if sample:
            go_cloud = seeded_uniform(seed, state, text, "sample") < p
            return Choice("cloud" if go_cloud else "device", "sampled", p)
        go_cloud = routes_to_cloud(p, threshold)
        if epsilon > 0 and seeded_uniform(seed, state, text, "explore") < epsilon:
            return Choice("device" if go_cloud else "cloud", "explore", p)
        return Choice("cloud" if go_cloud else "device", "router", p)

    return choose
