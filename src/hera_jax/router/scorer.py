"""The one router scorer: state texts (+ steps) -> features -> p(cloud), batched and memoised.

Used inside rollouts (the RL loop, evaluation) and for the RL loop's visit features. Embeddings go through a
features cache (`hera_jax.features`), and every embedding is rounded to float16 exactly as the cache file stores
it: a state embedded fresh in this run and the same state read back from the cache by a resumed run give
bit-identical features, so fresh and resumed runs route every state identically.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.features import (FeatureSpec, gather_rows, open_cache, router_features, scalar_features,
                               sentence_encode_fn)
from hera_jax.features.cache import FeatureCache, FeatureCacheError
from hera_jax.errors import HeraError
from hera_jax.router.checkpoint import RouterBundle
from hera_jax.router.model import RouterMLP, p_cloud
from hera_jax.state import AgentState, state_key


# Rows per router forward call (see RouterScorer.p_cloud). Small, because a served step or a rollout batch scores a
# few states: a forward costs its padded rows' work, not its real ones'.
FORWARD_ROWS = 8


@functools.cache
def p_cloud_fn(hidden_sizes: tuple[int, ...]):
    """The jitted `(params, features) -> p(cloud)` of one router architecture, shared by every scorer built for it."""
    model = RouterMLP(hidden_sizes)
    return jax.jit(lambda params, x: p_cloud(model, params, x))


class StateEmbedder:
    """Router inputs of state texts through features caches, one chain per text design: the read-only caches of
    `read_dirs` (e.g. a shipped dataset's; never written), then the writable cache in `cache_dir`, which keeps new
    embeddings in memory until `flush`. All embedding goes through `hera_jax.features.router_features`."""

    def __init__(self, spec: FeatureSpec, cache_dir: str | Path, read_dirs: Sequence[str | Path] = (), encode=None):
        self.spec = spec  # its encoder (and dimension) serve every design; its design is `embed`'s
        self.cache_dir = Path(cache_dir)
        self.read_dirs = [Path(d) for d in read_dirs]
        self.encode = encode or sentence_encode_fn(spec.encoder, show_progress=False)
        self.num_encoded = 0
        self._chains: dict[str, list[FeatureCache]] = {}

    def caches(self, spec: FeatureSpec) -> list[FeatureCache]:
        if spec.encoder != self.spec.encoder:
            raise ValueError(f"router uses encoder {spec.encoder!r}, embedder {self.spec.encoder!r}")
        if spec.text_design not in self._chains:
            own = open_cache(self.cache_dir, spec)
            bases = [open_cache(d, spec) for d in self.read_dirs]
            self._chains[spec.text_design] = [c for c in bases if c.path.exists() and c.path != own.path] + [own]
        return self._chains[spec.text_design]

    def features(self, texts: Sequence[str], steps: np.ndarray, spec: FeatureSpec,
                 signals: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """float32[N, spec.input_dim], embeddings rounded like the cache; uncached texts are encoded in one batch.
        `signals`: the device's confidence per state, for a spec with device-signal inputs."""
        chain = self.caches(spec)
        x, num_new = router_features(list(texts), np.asarray(steps), spec, chain, self.encode, signals=signals)
        self.num_encoded += num_new
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():  # a damaged cache: routing on NaN would silently drop the router from the results
            first = state_key(texts[int(np.argmax(bad))])
            damaged = [c for c in chain if not np.isfinite(c.embeddings).all()] or chain
            raise FeatureCacheError(
                f"features of {int(bad.sum())} state(s) hold NaN/inf (first: {first!r}); the cache file(s) with "
                f"such rows: {', '.join(str(c.path) for c in damaged)}; delete them to re-embed")
        return x

    def device_features(self, texts: Sequence[str], steps: np.ndarray, spec: FeatureSpec) -> jax.Array:
        """What `features` gives, as a jax.Array on JAX's default device: each distinct text is embedded (looked up)
        once on the host and the rows are gathered on the device, so a million repeated states (RL visits) never
        take gigabytes of host memory. No device-signal inputs (stage 2 does not route with them)."""
        if spec.device_signals:
            raise HeraError(f"device_features: inputs {list(spec.device_signals)} need the device's signals")
        position: dict[str, int] = {}
        index = np.fromiter((position.setdefault(t, len(position)) for t in texts), np.int32, len(texts))
        distinct = self.features(list(position), np.zeros(len(position)), dataclasses.replace(spec, scalar_features=()))
        return gather_rows()(jnp.asarray(distinct), jnp.asarray(index),
                             jnp.asarray(scalar_features(np.asarray(steps), spec)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32[N, D] embeddings of whole texts under this embedder's spec, no scalar features."""
        spec = dataclasses.replace(self.spec, scalar_features=())
        return self.features(texts, np.zeros(len(texts)), spec)

    def flush(self) -> None:
        """Write the texts embedded so far to the writable caches."""
        for chain in self._chains.values():
            chain[-1].flush()


class RouterScorer:
    """A trained router as `score(texts, steps) -> p_cloud[N]` and as a `(state, text, cloud_calls) -> p_cloud`
    routing function; each (state, step) is scored once.

    A router whose inputs include the device's confidence (`FeatureSpec.device_signals`) routes only with a
    `device` to ask first: `ProbedAgent`-like, so the device then acts with the very answer the router read."""

    def __init__(self, bundle: RouterBundle, embedder: StateEmbedder, device: Any = None):
        embedder.caches(bundle.feature_spec)  # refuses another encoder now, not at the first state
        self.bundle = bundle
        self.embedder = embedder
        self.device = device
        self.signal_names = bundle.feature_spec.device_signals
        self._forward = p_cloud_fn(tuple(bundle.train_config.hidden_sizes))
        self._memo: dict[tuple, float] = {}

    def features(self, texts: Sequence[str], steps: np.ndarray,
                 signals: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        return self.embedder.features(texts, steps, self.bundle.feature_spec, signals)

    def device_features(self, texts: Sequence[str], steps: np.ndarray) -> jax.Array:
        return self.embedder.device_features(texts, steps, self.bundle.feature_spec)

    def score(self, texts: Sequence[str], steps: Sequence[int] | np.ndarray,
              signals: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
        """float32[N] p(cloud); the states not scored before go through one embedding batch and one forward.
        `signals` (name -> per state) are required when the router takes the device's confidence as input."""
        if self.signal_names and signals is None:
            raise HeraError(
                f"this router takes the device's confidence ({', '.join(self.signal_names)}) as input: score it "
                "with the device's signals, or route through it with a device to ask (evaluate.py does)")
        values = [tuple(float(signals[n][i]) for n in self.signal_names) for i in range(len(texts))] \
            if self.signal_names else [()] * len(texts)
        keys = [_memo_key(t, s, v) for t, s, v in zip(texts, steps, values)]
        todo = {k: t for k, t in zip(keys, texts) if k not in self._memo}
        if todo:
            x = self.features(list(todo.values()), np.asarray([k[1] for k in todo]),
                              {n: np.asarray([k[2][j] for k in todo], np.float32)
                               for j, n in enumerate(self.signal_names)})
            self._memo.update(zip(todo, self.p_cloud(x).tolist()))
        return np.asarray([self._memo[k] for k in keys], np.float32)

    def memoized(self, text: str, step: int) -> float | None:
        """p(cloud) of a state scored before, else None: a lookup only, safe beside a `score` call in another thread
        (the proxy answers repeated states on its event loop, without a hop to the scoring thread)."""
        if self.signal_names:
            return None
        return self._memo.get(_memo_key(text, step, ()))

    def prefetch(self, texts: Sequence[str], steps: Sequence[int] | np.ndarray) -> None:
        """Score a batch of states ahead of their routing calls (the slots the engine decides together). A router
        that reads the device's confidence is scored state by state as the device answers instead."""
        if not self.signal_names:
            self.score(texts, steps)

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
        if not self.signal_names:
            return float(self.score([text], [state.step])[0])
        if self.device is None:
            raise HeraError(f"this router takes the device's confidence ({', '.join(self.signal_names)}) as input, "
                            "so it routes only where the device is asked first; no device was given to it")
        proposal = self.device.act(state)  # the device acts with this same answer when it is chosen
        signals = {name: [proposal_signal(proposal, name)] for name in self.signal_names}
        return float(self.score([text], [state.step], signals)[0])


def _memo_key(text: str, step, signals: tuple) -> tuple:
    """What a scorer's memo is keyed by: the state, its step and the device's signals (none for most routers)."""
    return state_key(text), int(step), signals


def proposal_signal(proposal: Any, name: str) -> float:
    """The `features.DEVICE_SIGNALS` value `name` of an agent's answer (agents.base.AgentStep); NaN if absent."""
    value = getattr(proposal, name.removeprefix("device_"), None)
    return np.nan if value is None else float(value)
