"""Files changed on disk after they were written are refused, not used: a features cache whose rows were permuted
or edited, a router checkpoint with one flipped byte in its parameter data."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.features import FeatureSpec
from hera_jax.features.cache import FeatureCache, FeatureCacheError
from hera_jax.router.checkpoint import CheckpointError, load_router, save_router
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import TrainConfig


def _cache(tmp_path) -> Path:
    path = tmp_path / "embeddings_toy.npz"
    cache = FeatureCache(path, "toy")
    rows = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    cache.add([f"k{i}" for i in range(6)], rows / np.linalg.norm(rows, axis=1, keepdims=True))
    return path


def _rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("change", [
    lambda a: a.__setitem__("embeddings", a["embeddings"][::-1].copy()),  # rows permuted, keys kept
    lambda a: a["embeddings"].__setitem__((2, 1), np.float16(1e4)),  # one huge finite value
])
def test_a_features_cache_changed_on_disk_is_refused(tmp_path, change):
    path = _cache(tmp_path)
    assert FeatureCache(path, "toy").lookup(["k0"]).shape == (1, 4)  # intact: loads
    _rewrite(path, change)
    with pytest.raises(FeatureCacheError, match="checksum"):
        FeatureCache(path, "toy")


def test_a_cache_without_a_checksum_still_loads(tmp_path):
    path = _cache(tmp_path)

    def drop_checksum(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta.pop("sha256")
        arrays["meta"] = np.asarray(json.dumps(meta))

    _rewrite(path, drop_checksum)
    assert len(FeatureCache(path, "toy").keys) == 6


def _saved_router(tmp_path) -> tuple[Path, TrainConfig, Path]:
    """A small saved router: (checkpoint folder, its train config, the largest file under params/: the arrays)."""
    spec = FeatureSpec(encoder="toy", embedding_dim=8)
    config = TrainConfig(hidden_sizes=(16,))
    params = RouterMLP((16,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 0, params, config, spec)
    data = max((p for p in (tmp_path / "ckpt" / "0" / "params").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    return tmp_path / "ckpt", config, data


def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path):
    folder, config, target = _saved_router(tmp_path)
    assert load_router(folder).train_config == config
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="differ from the digest saved with them"):
        load_router(folder)


def test_a_checkpoint_with_a_cut_data_file_is_one_short_error(tmp_path):
    folder, _, target = _saved_router(tmp_path)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut or damaged") as error:
        load_router(folder)
    assert len(str(error.value)) < 400 and "\n" not in str(error.value)
