"""State features for the router: a sentence embedding of the state text (+ small scalars).

`featurize` is the one entry point: it dedupes by `state_key`, embeds only what the on-disk cache lacks, and
appends the scalar columns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hera_jax.errors import HeraError
from hera_jax.features.cache import FeatureCache, FeatureCacheError, cache_path, embed_with_cache
from hera_jax.features.encoder import DEFAULT_MODEL, EncoderUnavailableError, load_encoder

SCALAR_FEATURES = {
    # fraction of a typical episode already spent: devices get more brittle deeper into long tasks
    "step_frac": lambda step, horizon: np.minimum(step / horizon, 1.0),
}


class FeatureSpecError(HeraError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Everything that fixes the router's input; stored with checkpoints and checked when they are loaded."""

    encoder: str = DEFAULT_MODEL
    embedding_dim: int = 384
    scalar_features: tuple[str, ...] = ("step_frac",)
    horizon: float = 50.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.horizon) or self.horizon <= 0:  # step_frac = step / horizon
            raise FeatureSpecError(f"horizon must be a positive number of steps, got {self.horizon}")

    @property
    def input_dim(self) -> int:
        return self.embedding_dim + len(self.scalar_features)


def scalar_features(steps: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    unknown = [n for n in spec.scalar_features if n not in SCALAR_FEATURES]
    if unknown:
        raise ValueError(f"unknown scalar feature(s) {unknown}; available: {sorted(SCALAR_FEATURES)}")
    steps = np.asarray(steps, np.float32)
    cols = [SCALAR_FEATURES[n](steps, spec.horizon) for n in spec.scalar_features]
    return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(steps), 0), np.float32)


def sentence_encode_fn(model: str = DEFAULT_MODEL, batch_size: int = 64, show_progress: bool = True):
    """A batch `encode(texts) -> float32[N, D]` over a lazily loaded sentence-transformers model."""
    encoder = None

    def encode(texts: list[str]) -> np.ndarray:
        nonlocal encoder
        if encoder is None:
            encoder = load_encoder(model)
        return encoder.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=show_progress,
        ).astype(np.float32)

    return encode


def featurize(
    state_keys: list[str],
    state_texts: list[str],
    steps: np.ndarray,
    spec: FeatureSpec,
    cache_dir: str | Path,
    encode=None,
) -> tuple[np.ndarray, int]:
    """float32[N, spec.input_dim] features and the number of states newly embedded (0 when the cache had them)."""
    cache = FeatureCache(cache_path(cache_dir, spec.encoder), spec.encoder, spec.embedding_dim)
    encode = encode or sentence_encode_fn(spec.encoder)
    embeddings, num_new = embed_with_cache(cache, state_keys, state_texts, encode)
    if embeddings.shape[1] != spec.embedding_dim:
        raise FeatureCacheError(
            f"encoder {spec.encoder!r} gives {embeddings.shape[1]}-d embeddings, config says {spec.embedding_dim}"
        )
    return np.concatenate([embeddings, scalar_features(steps, spec)], axis=1), num_new


__all__ = [
    "DEFAULT_MODEL",
    "EncoderUnavailableError",
    "FeatureCache",
    "FeatureCacheError",
    "FeatureSpec",
    "FeatureSpecError",
    "featurize",
    "scalar_features",
    "sentence_encode_fn",
]
