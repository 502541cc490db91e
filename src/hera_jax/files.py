"""File I/O every stage shares: JSON written atomically (temp file + rename), so a killed run never leaves a
half-written summary, config or manifest; file digests computed once per process per file version."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from hera_jax.errors import HeraError

# what a file's digest is computed with, by name: a model file by the sha256 its publisher gives; a steps file, which
# keys its columns cache, by blake3, a cryptographic hash several times faster a byte (benchmarks/RESULTS.md)
HASHES = {"sha256": hashlib.sha256, "blake3": blake3.blake3}


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
    """The file's sha256, hashed once per process per file version (a model file verified on load and fingerprinted
    for the decision memo: one read, not two)."""
    return digest_with_stat(path, "sha256")[0]


# How long a file must have been unchanged before its stat may stand for its content: a write within the same
# timestamp tick, or stamped by a file server whose clock lags ours, could leave size, mtime, inode and ctime as
# they were.
STILL_FOR_NS = 60_000_000_000


def digest_with_stat(path: str | Path, algorithm: str) -> tuple[str, tuple[int, int, int, int] | None]:
    """The file's digest (hex, by HASHES[algorithm]) and the (size, mtime, inode, ctime) of the very file that was
    hashed, which may stand for the digest while they stay the same (any write moves the ctime, which no tool sets
    back); None for them when they may not: the file changed while it was hashed or within STILL_FOR_NS before, or
    ctime does not mean "last changed" (Windows: creation time). The stat comes from the open file, not the path: a
    path swapped to another file between a stat and the read cannot pair one file's stat with another's digest, and
    on NFS opening revalidates the attributes a path stat may serve from its cache. Digests are kept per process by
    the hash's name and that stat."""
    with open(path, "rb") as f:
        started = time.time_ns()
        stat = os.fstat(f.fileno())
        before, key = signature_of(stat), (algorithm, stat.st_dev, *signature_of(stat))
        if key not in _DIGESTS:
            digest = HASHES[algorithm]()
            feed(f, digest)
            if signature_of(os.fstat(f.fileno())) != before:  # written while hashed: the digest is of no one version
                return digest.hexdigest(), None
            if len(_DIGESTS) >= 64:
                _DIGESTS.pop(next(iter(_DIGESTS)))
            _DIGESTS[key] = digest.hexdigest(), was_still(stat, started)
    digest, still = _DIGESTS[key]
    return digest, before if still else None


def feed(f: BinaryIO, digest: Any, end: int | None = None) -> bytes:
    """Feed `digest` the open file's bytes from where it stands to offset `end` (to its end if None, or if it is
    shorter); the last byte fed, b"" if none."""
    last = b""
    while (left := (1 << 22) if end is None else min(1 << 22, end - f.tell())) > 0 and (block := f.read(left)):
        digest.update(block)
        last = block[-1:]
    return last


def stat_of_open(path: str | Path) -> tuple[int, int, int, int]:
    """(size, mtime, inode, ctime) of the file at `path`, taken from the opened file (see `digest_with_stat`)."""
    with open(path, "rb") as f:
        return signature_of(os.fstat(f.fileno()))


def was_still(stat: os.stat_result, read_from_ns: int) -> bool:
    """Whether a file with this stat, read from `read_from_ns` (time.time_ns()) on without changing meanwhile, may
    have its stat stand for what was read (see `digest_with_stat`)."""
    return os.name != "nt" and read_from_ns - stat.st_ctime_ns >= STILL_FOR_NS


def signature_of(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


# by the hash's name and the hashed file's device and stat, one entry per file version: its digest, and whether the
# file had been still when it was hashed (its stat may then stand for the digest in a later process)
_DIGESTS: dict[tuple[Any, ...], tuple[str, bool]] = {}
