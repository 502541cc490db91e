"""State features for the router: sentence embeddings of the state text (+ small scalars).

`router_features` is the one entry point from state texts to the router's input, for every text design
(features/designs.py): training (`featurize`), the RL loop and evaluation all call it. It embeds only what the
caches lack, in one encoder batch, and returns embeddings rounded as the cache stores them (float16), so fresh and
cached states give the same input.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import jax

from hera_jax.errors import HeraError
from hera_jax.features.cache import FeatureCache, FeatureCacheError, cache_path, check_cache_folder, embed_with_caches
from hera_jax.features.designs import EMBEDDING_SLOTS, TEXT_DESIGNS, TextDesign, combine, embedding_plan
from hera_jax.features.encoder import DEFAULT_MODEL, EncoderUnavailableError, load_encoder
from hera_jax.limits import COUNT, POSITIVE

# The device's confidence in its own proposal, as the records store it (records.StepRecord device_*; a scoring LLM
# device reports all four, stand-ins none). As router inputs they cost one device call before every routing
# decision, which a local device pays anyway when it acts; see docs/features.md.
DEVICE_SIGNALS = ("device_logprob", "device_p_top", "device_margin", "device_entropy")
LOGPROB_FLOOR = -20.0  # per-token log-likelihoods below this say the same thing; keeps the input's scale bounded

SCALAR_FEATURES = {
    # fraction of a typical episode already spent: devices get more brittle deeper into long tasks
    "step_frac": lambda columns, horizon: np.minimum(columns["step"] / horizon, 1.0),
    "device_logprob": lambda columns, horizon: np.maximum(columns["device_logprob"], LOGPROB_FLOOR),
    "device_p_top": lambda columns, horizon: columns["device_p_top"],
    "device_margin": lambda columns, horizon: columns["device_margin"],
    "device_entropy": lambda columns, horizon: columns["device_entropy"],
}


class FeatureSpecError(HeraError):
    """Not a ValueError, so tyro passes it through and the CLI prints it as one line."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Everything that fixes the router's input; stored with checkpoints and checked when they are loaded."""

    encoder: str = DEFAULT_MODEL
    """sentence-transformers model: the shipped all-MiniLM-L6-v2, a local folder, or a hub id already cached."""
    embedding_dim: int = 384
    """Output size of the encoder (checked against the cache)."""
    scalar_features: tuple[str, ...] = ("step_frac",)
    """Scalar features appended to the embedding: step_frac, and the device's confidence in its proposal
    (device_logprob, device_p_top, device_margin, device_entropy: need a dataset collected with a scoring device,
    and the device asked before each routing decision; docs/features.md)."""
    horizon: float = 50.0
    """Steps that count as a full episode for the step_frac feature."""
    text_design: TextDesign = "segments"
    """How the state text is embedded: segments (task, observation and history items apart), joint (the whole text)
    or obs_first; see docs/features.md."""

    LIMITS: ClassVar[dict] = {"embedding_dim": COUNT, "horizon": POSITIVE}

    def __post_init__(self) -> None:
        if not np.isfinite(self.horizon) or self.horizon <= 0:  # step_frac = step / horizon
            raise FeatureSpecError(f"horizon must be a positive number of steps, got {self.horizon}")
        if self.text_design not in TEXT_DESIGNS:
            raise FeatureSpecError(f"unknown text design {self.text_design!r}; choose one of {TEXT_DESIGNS}")
        unknown = [n for n in self.scalar_features if n not in SCALAR_FEATURES]
        if unknown:  # checked when the flags are parsed, not after the encoder has run
            raise FeatureSpecError(f"unknown scalar feature(s) {unknown}; available: {sorted(SCALAR_FEATURES)}")

    @property
    def device_signals(self) -> tuple[str, ...]:
        """The scalar features that are the device's confidence signals (empty: the router needs only the state)."""
        return tuple(n for n in self.scalar_features if n in DEVICE_SIGNALS)

    @property
    def device_signal_columns(self) -> tuple[int, ...]:
        """Where the device-signal features sit in the router's input (the scalars follow the embeddings)."""
        first = self.input_dim - len(self.scalar_features)
        return tuple(first + i for i, n in enumerate(self.scalar_features) if n in DEVICE_SIGNALS)

    @property
    def input_dim(self) -> int:
        return EMBEDDING_SLOTS[self.text_design] * self.embedding_dim + len(self.scalar_features)


def open_cache(cache_dir: str | Path, spec: FeatureSpec) -> FeatureCache:
    """The embedding cache of `spec`'s encoder and text design in `cache_dir` (created on the first flush)."""
    return FeatureCache(cache_path(cache_dir, spec.encoder, spec.text_design), spec.encoder, spec.embedding_dim)


def scalar_features(steps: np.ndarray, spec: FeatureSpec,
                    signals: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """float32[N, len(spec.scalar_features)] of the rows' `steps` and, for device-signal features, `signals`
    (name in DEVICE_SIGNALS -> float[N], NaN where the device reported nothing)."""
    columns = {"step": np.asarray(steps, np.float32)}
    for name in spec.device_signals:
        values = None if signals is None else signals.get(name)
        if values is None:
            raise FeatureSpecError(
                f"router input {name!r} is the device's confidence in its proposal, and none was given: it needs "
                "records of a scoring device (--agents.device gguf-score) and the device asked before routing")
        values = np.asarray(values, np.float32)
        missing = ~np.isfinite(values)
        if missing.any():
            raise FeatureSpecError(
                f"router input {name!r}: {int(missing.sum())} of {len(values)} state(s) have no {name} (first at "
                f"row {int(np.argmax(missing))}); a stand-in device reports no confidence: collect with a scoring "
                "device (--agents.device gguf-score)")
        columns[name] = values
    cols = [SCALAR_FEATURES[n](columns, spec.horizon) for n in spec.scalar_features]
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
            show_progress_bar=show_progress and sys.stderr.isatty(),  # no bar redrawn into log files
        ).astype(np.float32)

    encode.unit_norm_rows = True  # normalize_embeddings: a cache of its rows must hold unit-norm rows only
    return encode


def router_features(
    texts: Sequence[str],
    steps: np.ndarray,
    spec: FeatureSpec,
    caches: Sequence[FeatureCache],
    encode: Callable[[list[str]], np.ndarray],
    keys: Sequence[str] | None = None,
    signals: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """(float32[N, spec.input_dim] router input of N state texts at their `steps`, number of texts newly embedded).
    `signals`: the device's confidence per state, for a spec with device-signal features (`scalar_features`).

    `caches` (opened with `open_cache` for this spec) are searched in order; what none holds is encoded in one batch
    and added to the LAST cache in memory (call its `flush()` to write it). `keys` are the states' cache keys under
    the joint design (default: `state_key(text)`); other designs key each embedded text by its own `state_key`.
    """
    scalars = scalar_features(steps, spec, signals)  # first: a missing signal fails before any embedding
    embedded, num_new = text_embeddings(texts, spec, caches, encode, keys)
    return np.concatenate([embedded, scalars], axis=1), num_new


def text_embeddings(
    texts: Sequence[str],
    spec: FeatureSpec,
    caches: Sequence[FeatureCache],
    encode: Callable[[list[str]], np.ndarray],
    keys: Sequence[str] | None = None,
) -> tuple[np.ndarray, int]:
    """The embedding part of `router_features` (float32[N, input_dim - scalar features], number newly embedded).
    Each distinct text is planned and looked up once (RL visits and evaluation states repeat a lot), then gathered."""
    position: dict[tuple[str, str | None], int] = {}
    pairs = zip(texts, keys) if keys is not None else ((t, None) for t in texts)
    index = np.fromiter((position.setdefault(pair, len(position)) for pair in pairs), np.int64, len(texts))
    if len(position) < len(texts):
        distinct_texts = [text for text, _ in position]
        distinct_keys = None if keys is None else [key for _, key in position]
        embeddings, num_new = text_embeddings(distinct_texts, spec, caches, encode, distinct_keys)
        return embeddings[index], num_new
    plan = embedding_plan(texts, spec.text_design, keys)
    embeddings, num_new = embed_with_caches(caches, plan.keys, plan.texts, encode)
    if embeddings.shape[1] != spec.embedding_dim:
        raise FeatureCacheError(
            f"encoder {spec.encoder!r} gives {embeddings.shape[1]}-d embeddings, config says {spec.embedding_dim}"
        )
    return combine(plan, embeddings, spec.text_design), num_new


def featurize(
    state_keys: list[str],
    state_texts: list[str],
    steps: np.ndarray,
    spec: FeatureSpec,
    cache_dir: str | Path,
    encode=None,
    signals: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """float32[N, spec.input_dim] features and the number of texts newly embedded (0 when the cache had them);
    new embeddings are written to the cache in `cache_dir`. `signals`: see `scalar_features`."""
    position: dict[str, int] = {}
    distinct_texts: list[str] = []
    state_index = np.empty(len(state_keys), np.int64)
    for i, (key, text) in enumerate(zip(state_keys, state_texts)):
        if key not in position:
            position[key] = len(distinct_texts)
            distinct_texts.append(text)
        state_index[i] = position[key]
    features, num_new = featurize_indexed(list(position), distinct_texts, state_index, steps, spec, cache_dir, encode,
                                          signals)
    return np.array(features), num_new  # a writable host copy, as before


def featurize_indexed(
    distinct_keys: Sequence[str],
    distinct_texts: Sequence[str],
    state_index: np.ndarray,
    steps: np.ndarray,
    spec: FeatureSpec,
    cache_dir: str | Path,
    encode=None,
    signals: Mapping[str, np.ndarray] | None = None,
) -> tuple[jax.Array, int]:
    """`featurize` for rows given as indices into their distinct states: each distinct text is planned, looked up
    and embedded once, then gathered per row on JAX's default device. Returns a jax.Array (float32[N, input_dim]):
    a million-row table's features are never copied through host memory."""
    cache_dir = Path(cache_dir)
    check_cache_folder(cache_dir)
    scalars = scalar_features(steps, spec, signals)  # also before: a missing device signal is a one-line error
    cache = open_cache(cache_dir, spec)
    distinct, num_new = text_embeddings(distinct_texts, spec, [cache], encode or sentence_encode_fn(spec.encoder),
                                        keys=distinct_keys)
    cache.flush()
    check_finite_embeddings(distinct, distinct_keys, spec, cache.path)
    import jax.numpy as jnp

    rows = gather_rows()(jnp.asarray(distinct), jnp.asarray(np.asarray(state_index, np.int32)),
                          jnp.asarray(scalars))
    return rows, num_new


@functools.cache
def gather_rows():
    """One fused program that writes each row once, on the device the router trains on (numpy's take is several
    times slower, and a host copy of a million rows is gigabytes). Built on first use: importing the features
    module (the commands' flags need FeatureSpec) does not import JAX."""
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda distinct, state_index, scalars: jnp.concatenate(
        [jnp.take(distinct, state_index, axis=0), scalars], axis=1))


def check_finite_embeddings(embedded: np.ndarray, keys: Sequence[str], spec: FeatureSpec, cache_file: Path) -> None:
    """Refuse NaN/inf embeddings (a damaged cache or encoder output) before they reach training, naming the cache
    file and the first bad state_key: one NaN input turns every trained weight into NaN."""
    bad = ~np.isfinite(embedded).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        what = "features" if spec.text_design == "joint" else f"segment embeddings ({spec.text_design} design)"
        raise FeatureCacheError(
            f"{cache_file}: {what} of state_key {keys[first]!r} hold NaN/inf ({int(bad.sum())} state(s) affected); "
            "delete that cache file to re-embed them"
        )


__all__ = [
    "DEFAULT_MODEL",
    "DEVICE_SIGNALS",
    "EncoderUnavailableError",
    "FeatureCache",
    "FeatureCacheError",
    "FeatureSpec",
    "FeatureSpecError",
    "TEXT_DESIGNS",
    "TextDesign",
    "check_finite_embeddings",
    "featurize",
    "featurize_indexed",
    "open_cache",
    "router_features",
    "scalar_features",
    "sentence_encode_fn",
    "text_embeddings",
]
