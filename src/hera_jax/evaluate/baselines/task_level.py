"""Task-level routing: one decision per episode from its first state, like query-level routers (RouteLLM).

Trained on the same IL data as the step router: the target of an episode is the share of its steps where the
device disagrees with the cloud (how much it "needs cloud"); a ridge regression on the first state's embedding
predicts it. The knob is the share of episodes sent to the cloud: the threshold is that quantile of the training
episodes' predictions, so a knob of 0.3 sends about 30% of episodes (all their steps) to the cloud.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: evaluate.py's flags (this module's knob) parse without JAX
    import jax

from hera_jax.evaluate.baselines.knob import Knob
from hera_jax.limits import PROBABILITY
from hera_jax.rollout.episode import Choice, Chooser

KNOB = "share of episodes to cloud"
# the values swept, one frontier point each (evaluate.py --task-level-shares)
VALUES = Knob(
    "task_level_shares", (0.3, 0.6),
    "Shares of episodes the task-level router sends to the cloud.",
    PROBABILITY,
)
TITLE = "task-level router"


def episode_targets(episode: np.ndarray, labels: np.ndarray, num_episodes: int) -> jax.Array:
    """float[E]: mean IL label (1 = needs cloud) of each episode's steps; `episode[i]` indexes step i's episode."""
    import jax
    import jax.numpy as jnp

    totals = jax.ops.segment_sum(jnp.asarray(labels, jnp.float32), episode, num_segments=num_episodes)
    counts = jax.ops.segment_sum(jnp.ones(len(labels), jnp.float32), episode, num_segments=num_episodes)
    return totals / jnp.maximum(counts, 1.0)


def fit(x: jax.Array, y: jax.Array, l2: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Ridge regression in closed form (centred, so the bias is not penalised): (weights[D], bias)."""
    import jax.numpy as jnp

    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    x_mean, y_mean = x.mean(0), y.mean()
    xc = x - x_mean
    weights = jnp.linalg.solve(xc.T @ xc + l2 * jnp.eye(x.shape[1]), xc.T @ (y - y_mean))
    return weights, y_mean - x_mean @ weights


def predict(params: tuple[jax.Array, jax.Array], x: jax.Array) -> jax.Array:
    import jax.numpy as jnp

    weights, bias = params
    return jnp.asarray(x, jnp.float32) @ weights + bias


def threshold_for_share(train_scores: np.ndarray, share: float) -> float:
    """Score above which `share` of the training episodes lie (share 0 -> above all, 1 -> at or below all)."""
    if share >= 1.0:
        return -np.inf
    if share <= 0.0:
        return np.inf
    return float(np.quantile(np.asarray(train_scores, np.float64), 1.0 - share))


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(scores) >= threshold


@dataclasses.dataclass
class TaskRouter:
    params: tuple[jax.Array, jax.Array]
    train_scores: np.ndarray
    embed: Callable[[list[str]], np.ndarray]  # first-state texts -> features [N, D]
    num_train_episodes: int = 0

    def score(self, text: str) -> float:
        return float(predict(self.params, self.embed([text]))[0])


def train(first_state_texts: list[str], targets: np.ndarray, embed, l2: float = 1.0) -> TaskRouter:
    x = embed(first_state_texts)
    params = fit(x, targets, l2)
    return TaskRouter(params, np.asarray(predict(params, x)), embed, len(first_state_texts))


def chooser(share: float, ctx, method: str = "task_level") -> Chooser:
    threshold = threshold_for_share(ctx.task_router.train_scores, share)
    episode_decision: dict[tuple[str, int], bool] = {}

    def choose(state, text, cloud_calls) -> Choice:
        key = (state.task, state.variation)
        if state.step == 0 or key not in episode_decision:  # decided once, on the episode's first state
            episode_decision[key] = bool(decide(np.array([ctx.task_router.score(text)]), threshold)[0])
        return Choice("cloud" if episode_decision[key] else "device", "task-level")

    return choose


def unavailable(ctx) -> str | None:
    return None if ctx.task_router is not None else "no training data to fit the task-level router"
