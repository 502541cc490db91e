"""File I/O every stage shares: JSON written atomically (temp file + rename), so a killed run never leaves a
half-written summary, config or manifest; file digests computed once per process per file version."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
