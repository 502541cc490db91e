"""File I/O every stage shares: JSON written atomically (temp file + rename), so a killed run never leaves a
half-written summary, config or manifest; file digests computed once per process per file version."""

from __future__ import annotations

import functools
import hashlib
import json
import os
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
    """The file's digest, hashed once per process while its size and mtime stay the same (a model file verified on
    load and fingerprinted for the decision memo, a steps file keying its columns: one read, not two)."""
    stat = Path(path).stat()
    # inode and ctime too: a file replaced by another (a new inode) or rewritten in place (ctime, which no tool
    # sets back) is hashed again even when its size and mtime look the same
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
