"""A trained router as a routing function inside the agent loop: state -> features -> p(cloud)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.features import open_cache, router_features, sentence_encode_fn
from hera_jax.router.checkpoint import RouterBundle
from hera_jax.router.model import RouterMLP
from hera_jax.state import AgentState


@functools.cache
def p_cloud_fn(hidden_sizes: tuple[int, ...]):
    """The jitted `(params, features) -> p(cloud)` of one router architecture, shared by every policy built for it
    (an RL run builds several per iteration; each used to compile its own copy)."""
    model = RouterMLP(hidden_sizes)
    return jax.jit(lambda params, x: jax.nn.sigmoid(model.apply({"params": params}, x)))


class RouterPolicy:
    """Callable `(state, state_text, cloud_calls) -> p_cloud`, usable with `rollout.routing.routed`.

    Embeddings go through the same on-disk cache as training, so revisited states are not embedded twice.
    """

    def __init__(self, bundle: RouterBundle, features_dir: str | Path, encode=None):
        self.bundle = bundle
        self.features_dir = Path(features_dir)
        spec = bundle.feature_spec
        self.cache = open_cache(features_dir, spec)
        self.encode = encode or sentence_encode_fn(spec.encoder, show_progress=False)
        self._forward = p_cloud_fn(tuple(bundle.train_config.hidden_sizes))

    def features(self, texts: list[str], steps: np.ndarray) -> np.ndarray:
        return router_features(texts, steps, self.bundle.feature_spec, [self.cache], self.encode)[0]

    def flush(self) -> None:
        """Write states embedded during rollouts to the on-disk cache (call once at the end)."""
        self.cache.flush()

    def p_cloud_batch(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(self.bundle.params, jnp.asarray(features, jnp.float32)))

    def __call__(self, state: AgentState, text: str, cloud_calls: int) -> float:
        return float(self.p_cloud_batch(self.features([text], np.array([state.step])))[0])
