"""Embedding cache keyed by `state_key`: each distinct text is embedded once, ever.

One `.npz` per encoder and text design holds the keys, the embeddings and the encoder's identity. A flush takes a
file lock, merges what other processes wrote meanwhile with this process's additions, and replaces the file
atomically (a unique temp file + rename): a killed run never leaves a half-written cache, and concurrent runs
sharing a cache lose nothing.
"""

from __future__ import annotations

from hera_jax.errors import HeraError

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock


class FeatureCacheError(HeraError, ValueError):
    pass


def check_cache_folder(folder: str | Path, flag: str = "") -> None:
    """Refuse a features-cache folder that is a file, before any embedding or episode (which may take minutes)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FeatureCacheError(f"{flag + ' ' if flag else ''}{folder}: is a file, not a folder for the features "
                                "cache; pass another folder")


def cache_path(cache_dir: str | Path, model: str, text_design: str = "joint") -> Path:
    """The cache file of one encoder and text design; the joint design keeps the original name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name if Path(model).exists() else model).strip("_")
    suffix = "" if text_design == "joint" else f"_{text_design}"
    return Path(cache_dir) / f"embeddings_{slug}{suffix}.npz"


class FeatureCache:
    def __init__(self, path: str | Path, model: str, dim: int | None = None):
        self.path = Path(path)
        self.model = model
        self.dim = dim
        self.keys: list[str] = []
        self.embeddings = np.zeros((0, dim or 0), np.float32)
        self._dirty = False  # in-memory additions not yet written
        self.checked = True  # its rows are known to be the encoder's (checksummed on disk, or written here)
        self.verified: set[str] = set()  # rows of an unchecked cache compared with the encoder in this process
        self.norms_checked = False  # every row found unit-norm in this process (check_all_unit_norm)
        if self.path.exists():
            self._load()
        self._index = {k: i for i, k in enumerate(self.keys)}

    def _load(self) -> None:
        self.keys, self.embeddings, checksummed = self._read()
        self.checked = checksummed  # else `embed_with_caches` compares the rows asked of it with the encoder
        self.verified = set()
        self.norms_checked = False

    def _read(self) -> tuple[list[str], np.ndarray, bool]:
        """(keys, float32 embeddings, whether a checksum vouches for them) of the file on disk, checked against this
        cache's encoder and size."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                keys, embeddings = data["keys"].tolist(), data["embeddings"].astype(np.float32)
        except Exception as e:
            raise FeatureCacheError(
                f"{self.path}: unreadable features cache ({type(e).__name__}: {e}); delete it to rebuild"
            ) from e
        if meta.get("model") != self.model:
            raise FeatureCacheError(
                f"{self.path}: cache was built with encoder {meta.get('model')!r}, not {self.model!r}; "
                "pass the matching --encoder or a different --features-dir"
            )
        if self.dim is not None and meta.get("dim") != self.dim:
            raise FeatureCacheError(
                f"{self.path}: cache holds {meta.get('dim')}-d embeddings but the encoder gives {self.dim}-d; "
                "use a different --features-dir or delete the stale cache"
            )
        if embeddings.shape != (len(keys), meta.get("dim")):
            raise FeatureCacheError(f"{self.path}: embeddings shape {embeddings.shape} does not match {len(keys)} keys")
        # caches written before the checksum existed carry none and load as they always did
        if "sha256" in meta and meta["sha256"] != content_digest(keys, embeddings):
            raise FeatureCacheError(
                f"{self.path}: its keys and embeddings do not match the checksum written with them (rows permuted, "
                "edited or damaged on disk); delete it to re-embed"
            )
        check_row_norms(self.path, keys, embeddings)
        self.dim = meta["dim"]
        return keys, embeddings, "sha256" in meta

    def missing(self, keys: Sequence[str]) -> list[str]:
        seen: set[str] = set()
        out = []
        for k in keys:
            if k not in self._index and k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def add(self, keys: Sequence[str], embeddings: np.ndarray, save: bool = True) -> None:
        """Add new keys; `save=False` keeps them in memory until `flush()` (per-step use inside rollouts)."""
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(keys):
            raise ValueError(f"expected {len(keys)} embeddings, got array of shape {embeddings.shape}")
        if self.dim is None or not self.keys:
            self.dim = int(embeddings.shape[1])
            self.embeddings = self.embeddings.reshape(0, self.dim)
        if embeddings.shape[1] != self.dim:
            raise FeatureCacheError(f"{self.path}: new embeddings are {embeddings.shape[1]}-d, cache is {self.dim}-d")
        new = [k for k in keys if k not in self._index]
        if len(new) != len(keys):
            raise ValueError("add() got keys already in the cache; call missing() first")
        self.keys.extend(new)
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._dirty = True
        if save:
            self.flush()

    def flush(self) -> None:
        """Write in-memory additions, merged under a file lock with whatever other writers flushed meanwhile."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            if self.path.exists():
                disk_keys, disk_embeddings, disk_checked = self._read()
                others = [i for i, k in enumerate(disk_keys) if k not in self._index]
                if others:
                    self.checked = self.checked and disk_checked  # rows nobody compared get no checksum
                    self.keys.extend(disk_keys[i] for i in others)
                    self.embeddings = np.concatenate([self.embeddings, disk_embeddings[others]])
                    self._index = {k: i for i, k in enumerate(self.keys)}
                    self.norms_checked = False  # other writers' rows: not yet looked at here
            stored = self.embeddings.astype(np.float16)
            # a checksum vouches for rows known to be the encoder's: an unchecked cache stays without one
            meta = json.dumps({"model": self.model, "dim": self.dim, "count": len(self.keys),
                               **({"sha256": content_digest(self.keys, stored)} if self.checked else {})})
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
            try:
                # mkstemp makes the file private (0600); keep the cache as readable as before for others sharing it
                os.chmod(tmp, self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644)
                with os.fdopen(fd, "wb") as f:
                    # float16 halves the shipped file; cosine-normalised MiniLM vectors lose nothing that matters
                    np.savez(f, keys=np.asarray(self.keys), embeddings=stored, meta=np.asarray(meta))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._dirty = False
        self.embeddings = self.embeddings.astype(np.float16).astype(np.float32)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        missing = [k for k in keys if k not in self._index]
        if missing:
            raise KeyError(f"{len(missing)} state keys are not in the cache, e.g. {missing[0]}")
        return self.embeddings[[self._index[k] for k in keys]]


def check_row_norms(path: Path, keys: Sequence[str], embeddings: np.ndarray) -> None:
    """Refuse a cache whose rows are unit-norm (a normalising encoder's, as MiniLM's are) but for a few: those few
    were scaled or edited, whatever the checksum says (a checksum shows damage, not an edit whose writer rewrote
    it). A non-normalising encoder's rows have no common norm, and NaN rows are left to check_finite_embeddings."""
    norms, off = _off_unit_norm(embeddings)
    finite = np.isfinite(norms)
    if finite.sum() < 20 or (finite & ~off).sum() < 0.9 * finite.sum():
        return
    if off.any():
        count, example = _rows_off_unit_norm(keys, embeddings)
        raise FeatureCacheError(f"{path}: {count} are not unit-norm as all the others are (e.g. {example}): rows "
                                "scaled or edited; delete it to re-embed")


def check_all_unit_norm(cache: FeatureCache) -> None:
    """Refuse a cache of a normalising encoder (`encode.unit_norm_rows`) holding any finite row that is not
    unit-norm: every row scaled alike (or written by another encoder under this one's name) passes the checksum
    its writer recomputed and check_row_norms' majority rule, but not this."""
    if cache.norms_checked:
        return
    off = _rows_off_unit_norm(cache.keys, cache.embeddings)
    if off:
        raise FeatureCacheError(
            f"{cache.path}: {off[0]} are not unit-norm (e.g. {off[1]}), but encoder {cache.model!r} gives unit-norm "
            "rows: rows scaled, or written by another encoder; delete it to re-embed")
    cache.norms_checked = True


def _rows_off_unit_norm(keys: Sequence[str], embeddings: np.ndarray) -> tuple[str, str] | None:
    """("N of its M rows", "'key': norm X" of the first) for the finite rows that are not unit-norm, or None."""
    norms, off = _off_unit_norm(embeddings)
    if not off.any():
        return None
    first = int(np.argmax(off))
    return f"{int(off.sum())} of its {len(norms)} rows", f"{keys[first]!r}: norm {norms[first]:.3g}"


def _off_unit_norm(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's norm, which finite rows are not unit-norm); NaN rows are left to check_finite_embeddings."""
    norms = np.linalg.norm(embeddings, axis=1)
    return norms, np.isfinite(norms) & ~np.isclose(norms, 1.0, atol=2e-2)


def content_digest(keys: Sequence[str], embeddings: np.ndarray) -> str:
    """sha256 of the keys in order and their embeddings as stored (float16): any permutation or edit changes it."""
    digest = hashlib.sha256("\n".join(keys).encode("utf-8"))
    digest.update(np.ascontiguousarray(np.asarray(embeddings, np.float16)).tobytes())
    return digest.hexdigest()


def round_like_cache(embeddings):
    """Embeddings as the cache stores them (float16), as float32: fresh and cached texts give the same values. A
    jax.Array is rounded where it is (a million rows' features need no host copy), anything else becomes numpy."""
    if hasattr(embeddings, "devices"):  # a jax.Array (duck-typed: this module does not import JAX)
        return embeddings.astype("float16").astype("float32")
    return np.asarray(embeddings, np.float16).astype(np.float32)


def _verify_unchecked(cache: FeatureCache, keys: Sequence[str], text_of: dict[str, str],
                      encode: Callable[[list[str]], np.ndarray]) -> None:
    """A cache written without a checksum (by an older version or another tool) has every row asked of it
    re-embedded and compared with the encoder, once per process: a sample would pass two swapped rows it did not
    draw, and rows permuted, scaled or edited would train a router silently. Where the encoder's rows are unit-norm,
    every row's norm is checked too. Once every row of the cache has been compared it is known to be the encoder's,
    and its next flush writes a checksum (later runs compare nothing); until then it stays without one."""
    if cache.checked or not keys:
        return
    from hera_jax.features.encoder import EncoderUnavailableError

    todo = [k for k in dict.fromkeys(keys) if k not in cache.verified]
    if not todo:
        return
    try:
        fresh = round_like_cache(np.asarray(encode([text_of[k] for k in todo]), np.float32))
    except EncoderUnavailableError:
        return  # nothing to compare with offline; every row asked for was cached, so the run needs no encoder
    cached = cache.lookup(todo)
    # a NaN/inf row is left to check_finite_embeddings, which names the state
    differ = np.isfinite(cached).all(axis=1) & ~np.isclose(cached, fresh, atol=2e-2).all(axis=1)
    if differ.any():
        raise FeatureCacheError(
            f"{cache.path}: carries no checksum, and {int(differ.sum())} of {len(todo)} rows compared differ from what "
            f"encoder {cache.model!r} gives for their texts (e.g. {todo[int(np.argmax(differ))]!r}): rows permuted "
            "or edited; delete it to re-embed")
    if not cache.verified and np.allclose(np.linalg.norm(fresh, axis=1), 1.0, atol=1e-2):
        off = _rows_off_unit_norm(cache.keys, cache.embeddings)
        if off:
            raise FeatureCacheError(
                f"{cache.path}: carries no checksum, and {off[0]} are not unit-norm as encoder {cache.model!r}'s rows "
                f"are (e.g. {off[1]}): rows scaled or edited; delete it to re-embed")
    cache.verified.update(todo)
    if len(cache.verified) == len(cache.keys):
        cache.checked, cache._dirty = True, True  # every row is the encoder's: the next flush adds the checksum


def embed_with_caches(
    caches: Sequence[FeatureCache],
    keys: Sequence[str],
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
) -> tuple[np.ndarray, int]:
    """Embeddings for `keys` (one row each, rounded like the cache). Caches are searched in order; keys none holds
    are encoded in one batch and added in memory to the last cache (flush it to write). Returns (array, num_new)."""
    if not caches:
        raise ValueError("embed_with_caches needs at least one cache (the last one receives new embeddings)")
    if getattr(encode, "unit_norm_rows", False):
        for cache in caches:
            check_all_unit_norm(cache)
    text_of = dict(zip(keys, texts))
    found: dict[str, np.ndarray] = {}
    wanted = list(dict.fromkeys(keys))
    for cache in caches[:-1]:
        absent = set(cache.missing(wanted))
        present = [k for k in wanted if k not in absent]
        if present:
            _verify_unchecked(cache, present, text_of, encode)
            found.update(zip(present, cache.lookup(present)))
        wanted = [k for k in wanted if k in absent]
    own = caches[-1]
    new_keys = own.missing(wanted)
    _verify_unchecked(own, [k for k in wanted if k not in set(new_keys)], text_of, encode)
    if new_keys:
        own.add(new_keys, encode([text_of[k] for k in new_keys]), save=False)
    if wanted:
        found.update(zip(wanted, own.lookup(wanted)))
    dim = own.dim if own.dim is not None else 0
    rows = np.stack([found[k] for k in keys]) if len(keys) else np.zeros((0, dim), np.float32)
    return round_like_cache(rows), len(new_keys)
