"""p_cloud of states met during evaluation rollouts, each state embedded at most once.

Routers at different thresholds, and different routers with the same encoder, revisit the same states; the
embedding (the slow part on a CPU) is looked up first in read-only caches (the training dataset's), then in the
evaluation's own cache, and only then computed. The evaluation writes only its own cache, never the dataset's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.features import FeatureSpec, open_cache, router_features, sentence_encode_fn
from hera_jax.features.cache import FeatureCache, cache_path, embed_with_caches
from hera_jax.router.checkpoint import RouterBundle
from hera_jax.router.model import RouterMLP
from hera_jax.state import AgentState, state_key


class Embedder:
    """`embed(keys, texts) -> float32[N, D]` through read-only caches, then a writable one, then the encoder;
    `caches(spec)` gives the same chain for any text design, for `hera_jax.features.router_features`."""

    def __init__(self, encoder: str, dim: int, read_dirs: Sequence[Path], write_dir: Path, encode=None):
        self.encoder = encoder
        self.read_dirs, self.write_dir = list(read_dirs), Path(write_dir)
        self._design_caches: dict[str, list[FeatureCache]] = {}  # other text designs than joint, opened when used
        self.bases = [
            FeatureCache(cache_path(d, encoder), encoder, dim) for d in read_dirs if cache_path(d, encoder).exists()
        ]
        self.own = FeatureCache(cache_path(write_dir, encoder), encoder, dim)
        self.encode = encode or sentence_encode_fn(encoder, show_progress=False)
        self.num_encoded = 0

    def embed(self, keys: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        vectors, num_new = embed_with_caches([*self.bases, self.own], keys, texts, self.encode)
        self.num_encoded += num_new
        return vectors

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed([state_key(t) for t in texts], texts)

    def caches(self, spec: FeatureSpec) -> list[FeatureCache]:
        """Read-only caches, then the writable one, of `spec`'s text design (for `router_features`)."""
        if spec.text_design == "joint":
            return [*self.bases, self.own]
        if spec.text_design not in self._design_caches:
            bases = [open_cache(d, spec) for d in self.read_dirs if cache_path(d, spec.encoder, spec.text_design).exists()]
            self._design_caches[spec.text_design] = [*bases, open_cache(self.write_dir, spec)]
        return self._design_caches[spec.text_design]

    def flush(self) -> None:
        self.own.flush()
        for caches in self._design_caches.values():
            caches[-1].flush()


class RouterScorer:
    """A trained router as `(state, text, cloud_calls) -> p_cloud`, remembering each (state, step) it scored."""

    def __init__(self, bundle: RouterBundle, embedder: Embedder):
        if bundle.feature_spec.encoder != embedder.encoder:
            raise ValueError(f"router uses encoder {bundle.feature_spec.encoder!r}, embedder {embedder.encoder!r}")
        self.bundle = bundle
        self.embedder = embedder
        model = RouterMLP(tuple(bundle.train_config.hidden_sizes))
        self._forward = jax.jit(lambda params, x: jax.nn.sigmoid(model.apply({"params": params}, x)))
        self._memo: dict[tuple[str, int], float] = {}

    def p_cloud_batch(self, texts: Sequence[str], steps: np.ndarray) -> np.ndarray:
        spec = self.bundle.feature_spec
        x, num_new = router_features(texts, np.asarray(steps), spec, self.embedder.caches(spec), self.embedder.encode)
        self.embedder.num_encoded += num_new
        return np.asarray(self._forward(self.bundle.params, jnp.asarray(x, jnp.float32)))

    def __call__(self, state: AgentState, text: str, cloud_calls: int) -> float:
        key = (state_key(text), state.step)
        if key not in self._memo:
            self._memo[key] = float(self.p_cloud_batch([text], np.array([state.step]))[0])
        return self._memo[key]
