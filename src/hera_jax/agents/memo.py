"""A deterministic agent's decisions, memoized on disk: each distinct prompt pays for the model once, ever.

One JSON line per decision, appended under a file lock and fsynced, so several processes (Ray workers, a collection
and an evaluation) share one memo and a killed run loses at most the line it was writing; that torn line is
reported and skipped on read, never fatal. The key is a hash of everything the decision depends on: the model
file's identity, the prompt design and the exact prompt and candidates. Lines written by other processes since the
last read are picked up on a miss, before the model is asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock


def decision_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class DecisionMemo:
    """`get(key)` -> the stored decision (a dict) or None; `put(key, decision)` appends it. Counts hits and misses."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")
        self._entries: dict[str, dict[str, Any]] = {}
        self._offset = 0  # bytes of the file read so far
        self._line = 0
        self.hits = 0
        self.misses = 0
        self._read_new()

    def _read_new(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written by another process is read next time
        for raw in data[:end].splitlines():
            self._line += 1
            try:
                entry = json.loads(raw)
                self._entries[entry["key"]] = entry["decision"]
            except (ValueError, KeyError, TypeError) as e:
                warnings.warn(f"{self.path}:{self._line}: skipped a malformed memo line ({type(e).__name__})",
                              stacklevel=2)
        self._offset += end

    def get(self, key: str) -> dict[str, Any] | None:
        decision = self._entries.get(key)
        if decision is None:
            self._read_new()
            decision = self._entries.get(key)
        if decision is None:
            self.misses += 1
        else:
            self.hits += 1
        return decision

    def put(self, key: str, decision: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "decision": decision}, ensure_ascii=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            with open(self.path, "ab") as f:
                if f.tell() > 0:  # a killed writer's torn last line must not swallow this one
                    with open(self.path, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            f.write(b"\n")
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        self._entries[key] = decision

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        asked = self.hits + self.misses
        return {"memo_file": str(self.path), "memo_entries": len(self._entries), "memo_hits": self.hits,
                "memo_misses": self.misses, "memo_hit_rate": self.hits / asked if asked else None}
