"""The trained router as a Python object: `Router.load(checkpoint)`, then `p_cloud(...)` / `route(...)` per step.

It is the engine's own scorer (`router.scorer.RouterScorer`) over the engine's own state text
(`state.state_text`, with the history length and observation clipping the router was trained with), so a state
gets the same p_cloud here, in the proxy (`serve/app.py`) and inside a rollout.

    from hera_jax import Router
    router = Router.load("runs/il/<run>/checkpoint")
    router.route(task="Put a clean apple in the fridge.", history=[("go to sinkbasin 1", "You arrive ...")],
                 observation="On the sinkbasin 1, you see an apple 1.")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from hera_jax.errors import HeraError
from hera_jax.state import AgentState, state_text

DEFAULT_HISTORY_K, DEFAULT_MAX_OBS_CHARS = 3, 400  # the collection defaults, for checkpoints that do not say


@dataclasses.dataclass(frozen=True)
class StepInput:
    """One step as the router sees it: the task, the (action, observation) pairs so far, the observation now."""

    task: str
    history: tuple[tuple[str, str], ...] = ()
    observation: str = ""
    step: int | None = None  # default: len(history)


@dataclasses.dataclass(frozen=True)
class Decision:
    route: Literal["device", "cloud"]
    p_cloud: float
    threshold: float
    reason: str = "router"  # or why the rule was overridden (a budget, an episode cap, a failed upstream)


class Router:
    """A trained router checkpoint with its threshold; thread-safe for reads after `load`."""

    def __init__(self, scorer, threshold: float, history_k: int, max_obs_chars: int, source: str = ""):
        self.scorer = scorer
        self.threshold = float(threshold)
        self.history_k = history_k
        self.max_obs_chars = max_obs_chars
        self.source = source

    @classmethod
    def load(cls, checkpoint: str | Path, threshold: float | None = None, step: int | None = None,
             features_cache: str | Path | None = None, encode=None) -> Router:
        """The router at `checkpoint` (its newest step by default). `threshold` defaults to the one it was trained
        and reported with; new state embeddings are kept in `features_cache` (default: none written)."""
        import tempfile

        from hera_jax.router.checkpoint import load_router
        from hera_jax.router.scorer import RouterScorer, StateEmbedder

        bundle = load_router(checkpoint, step)
        if bundle.feature_spec.device_signals:  # the proxy sees chat messages, not the device's answer's scores
            raise HeraError(
                f"{checkpoint}: this router takes the device's confidence ({', '.join(bundle.feature_spec.device_signals)}) "
                "as input, which the serving proxy does not have; serve a router trained on the state text alone")
        trained_on = (bundle.meta.get("trained_on") or [{}])[0]
        cache = Path(features_cache) if features_cache is not None else Path(tempfile.mkdtemp(prefix="hera-router-"))
        embedder = StateEmbedder(bundle.feature_spec, cache, encode=encode)
        stored = bundle.meta.get("threshold", 0.5)
        return cls(RouterScorer(bundle, embedder), stored if threshold is None else threshold,
                   trained_on.get("history_k") or DEFAULT_HISTORY_K,
                   trained_on.get("max_obs_chars") or DEFAULT_MAX_OBS_CHARS, str(checkpoint))

    def text(self, step: StepInput) -> tuple[str, int]:
        """The state text the router embeds, and the step index."""
        index = len(step.history) if step.step is None else step.step
        state = AgentState(task_description=step.task, observation=step.observation, valid_actions=(),
                           history=tuple((str(a), str(o)) for a, o in step.history), step=index)
        return state_text(state, self.history_k, self.max_obs_chars), index

    def p_cloud_batch(self, steps: Sequence[StepInput]) -> np.ndarray:
        """float32[N]: one embedding batch and one forward for all the steps not scored before."""
        texts, indices = zip(*(self.text(s) for s in steps)) if steps else ((), ())
        return self.scorer.score(list(texts), np.asarray(indices, np.int64))

    def p_cloud(self, task: str, history: Sequence[tuple[str, str]] = (), observation: str = "",
                step: int | None = None) -> float:
        return float(self.p_cloud_batch([StepInput(task, tuple(history), observation, step)])[0])

    def route(self, task: str, history: Sequence[tuple[str, str]] = (), observation: str = "",
              step: int | None = None, threshold: float | None = None) -> Decision:
        """Cloud when p_cloud >= threshold (the engine's rule, `rollout.routing.routed`)."""
        from hera_jax.rollout.routing import routes_to_cloud

        p = self.p_cloud(task, history, observation, step)
        cut = self.threshold if threshold is None else float(threshold)
        return Decision("cloud" if routes_to_cloud(p, cut) else "device", p, cut)
