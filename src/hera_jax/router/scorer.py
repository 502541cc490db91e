"""The one router scorer: state texts (+ steps) -> features -> p(cloud), batched and memoised.

Used inside rollouts (the RL loop, evaluation) and for the RL loop's visit features. Embeddings go through a
features cache (`hera_jax.features`), and every embedding is rounded to float16 exactly as the cache file stores
it: a state embedded fresh in this run and the same state read back from the cache by a resumed run give
bit-identical features, so fresh and resumed runs route every state identically.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.features import FeatureSpec, scalar_features, sentence_encode_fn
from hera_jax.features.cache import FeatureCache, cache_path, embed_with_cache
from hera_jax.router.checkpoint import RouterBundle
from hera_jax.router.model import RouterMLP
from hera_jax.state import AgentState, state_key


FORWARD_ROWS = 64  # rows per router forward call (see RouterScorer.p_cloud)


def round_like_cache(x: np.ndarray) -> np.ndarray:
    """float32 values as the features cache file stores them (float16)."""
    return np.asarray(x, np.float16).astype(np.float32)


@functools.cache
def p_cloud_fn(hidden_sizes: tuple[int, ...]):
    """The jitted `(params, features) -> p(cloud)` of one router architecture, shared by every scorer built for it."""
    model = RouterMLP(hidden_sizes)
    return jax.jit(lambda params, x: jax.nn.sigmoid(model.apply({"params": params}, x)))


class StateEmbedder:
    """Embeddings of state texts through one writable features cache (kept in memory until `flush`).

    `read_dirs` are caches that are only read (e.g. a shipped dataset's): their entries seed the writable cache in
    memory, so a state they hold is never embedded again, and they are never written.
    """

    def __init__(self, spec: FeatureSpec, cache_dir: str | Path, read_dirs: Sequence[str | Path] = (), encode=None):
        self.spec = spec
        self.cache = FeatureCache(cache_path(cache_dir, spec.encoder), spec.encoder, spec.embedding_dim)
        for read_dir in read_dirs:
            path = cache_path(read_dir, spec.encoder)
            if path.exists() and path != self.cache.path:
                base = FeatureCache(path, spec.encoder, spec.embedding_dim)
                absent = self.cache.missing(base.keys)
                if absent:
                    self.cache.add(absent, base.lookup(absent), save=False)
        self.encode = encode or sentence_encode_fn(spec.encoder, show_progress=False)
        self.num_encoded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32[N, D], rounded like the cache; states the cache lacks are encoded in one batch."""
        embeddings, num_new = embed_with_cache(self.cache, [state_key(t) for t in texts], list(texts), self.encode,
                                               save=False)
        self.num_encoded += num_new
        return round_like_cache(embeddings)

    def flush(self) -> None:
        """Write the states embedded so far to the writable cache file."""
        self.cache.flush()


class RouterScorer:
    """A trained router as `score(texts, steps) -> p_cloud[N]` and as a `(state, text, cloud_calls) -> p_cloud`
    routing function; each (state, step) is scored once."""

    def __init__(self, bundle: RouterBundle, embedder: StateEmbedder):
        if bundle.feature_spec.encoder != embedder.spec.encoder:
            raise ValueError(f"router uses encoder {bundle.feature_spec.encoder!r}, embedder "
                             f"{embedder.spec.encoder!r}")
        self.bundle = bundle
        self.embedder = embedder
        self._forward = p_cloud_fn(tuple(bundle.train_config.hidden_sizes))
        self._memo: dict[tuple[str, int], float] = {}

    def features(self, texts: Sequence[str], steps: np.ndarray) -> np.ndarray:
        return np.concatenate([self.embedder.embed(texts),
                               scalar_features(np.asarray(steps), self.bundle.feature_spec)], axis=1)

    def score(self, texts: Sequence[str], steps: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32[N] p(cloud); the states not scored before go through one embedding batch and one forward."""
        keys = [(state_key(t), int(s)) for t, s in zip(texts, steps)]
        todo = {k: (t, k[1]) for k, t in zip(keys, texts) if k not in self._memo}
        if todo:
            new_texts = [t for t, _ in todo.values()]
            x = self.features(new_texts, np.asarray([s for _, s in todo.values()]))
            self._memo.update(zip(todo, self.p_cloud(x).tolist()))
        return np.asarray([self._memo[k] for k in keys], np.float32)

    def p_cloud(self, features: np.ndarray) -> np.ndarray:
        """float32[N] from features[N, input_dim], in zero-padded chunks of FORWARD_ROWS rows: XLA's matmul result
        for a row depends on the batch's row count, so a fixed shape keeps a state's p_cloud independent of which
        other states it was scored with (and compiles once)."""
        n = len(features)
        padded = np.zeros((-(-n // FORWARD_ROWS) * FORWARD_ROWS, features.shape[1]), np.float32)
        padded[:n] = features
        chunks = [np.asarray(self._forward(self.bundle.params, jnp.asarray(padded[i:i + FORWARD_ROWS])))
                  for i in range(0, len(padded), FORWARD_ROWS)]
        return np.concatenate(chunks)[:n]

    def __call__(self, state: AgentState, text: str, cloud_calls: int) -> float:
        return float(self.score([text], [state.step])[0])
