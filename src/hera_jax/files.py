"""File I/O every stage shares: JSON written atomically (temp file + rename), so a killed run never leaves a
half-written summary, config or manifest; file digests computed once per process per file version."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from hera_jax.errors import HeraError


def write_json_atomic(path: str | Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json_object(path: str | Path, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in `path`, or a one-line error naming the file, what it should hold and `fix` (what the user
    can do) when it is unreadable, cut short or not an object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HeraError(f"{path}: not readable as {what} ({e}); {fix}") from None
    if not isinstance(value, dict):
        raise HeraError(f"{path}: holds a JSON {type(value).__name__}, not {what}; {fix}")
    return value


def sha256_of(path: str | Path) -> str:
    """The file's digest, hashed once per process per file version (a model file verified on load and fingerprinted
    for the decision memo, a steps file keying its columns: one read, not two)."""
    return sha256_with_stat(path)[0]


# How long a file must have been unchanged before its stat may stand for its content: a write within the same
# timestamp tick, or stamped by a file server whose clock lags ours, could leave size, mtime, inode and ctime as
# they were.
STILL_FOR_NS = 60_000_000_000


def sha256_with_stat(path: str | Path) -> tuple[str, tuple[int, int, int, int] | None]:
    """The file's digest and the (size, mtime, inode, ctime) of the very file that was hashed, which may stand for
    the digest while they stay the same (any write moves the ctime, which no tool sets back); None for them when
    they may not: the file changed while it was hashed or within STILL_FOR_NS before, or ctime does not mean "last
    changed" (Windows: creation time). The stat comes from the open file, not the path: a path swapped to another
    file between a stat and the read cannot pair one file's stat with another's digest, and on NFS opening
    revalidates the attributes a path stat may serve from its cache. Digests are kept per process by that stat."""
    with open(path, "rb") as f:
        started = time.time_ns()
        stat = os.fstat(f.fileno())
        before, key = signature_of(stat), (stat.st_dev, *signature_of(stat))
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
            if signature_of(os.fstat(f.fileno())) != before:  # written while hashed: the digest is of no one version
                return digest.hexdigest(), None
            if len(_DIGESTS) >= 64:
                _DIGESTS.pop(next(iter(_DIGESTS)))
            _DIGESTS[key] = digest.hexdigest(), was_still(stat, started)
    digest, still = _DIGESTS[key]
    return digest, before if still else None


def stat_of_open(path: str | Path) -> tuple[int, int, int, int]:
    """(size, mtime, inode, ctime) of the file at `path`, taken from the opened file (see `sha256_with_stat`)."""
    with open(path, "rb") as f:
        return signature_of(os.fstat(f.fileno()))


def was_still(stat: os.stat_result, read_from_ns: int) -> bool:
    """Whether a file with this stat, read from `read_from_ns` (time.time_ns()) on without changing meanwhile, may
    have its stat stand for what was read (see `sha256_with_stat`)."""
    return os.name != "nt" and read_from_ns - stat.st_ctime_ns >= STILL_FOR_NS


def signature_of(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


# by the hashed file's device and stat, one entry per file version: its digest, and whether the file had been still
# when it was hashed (its stat may then stand for the digest in a later process)
_DIGESTS: dict[tuple[int, ...], tuple[str, bool]] = {}
