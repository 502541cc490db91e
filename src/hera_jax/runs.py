"""Run folders, in one place: where a new one goes (`runs/<kind>/<timestamp>`), the settings as JSON, the resume
check against a folder's `config.json` (with each experiment's one declared list of fields that may change on
resume), and the lock that keeps two runs (or two collections) out of one folder at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from hera_jax.errors import HeraError
from hera_jax.limits import redact_url

LOCK_FILE = ".run.lock"
# The repository's runs/ folder, where new run folders go by default.
RUNS_ROOT = Path(__file__).resolve().parents[2] / "runs"


class RunFolderError(HeraError, ValueError):
    """A run folder is busy, belongs to other settings, or holds another run's outputs."""


def new_run_dir(runs_root: Path, kind: str) -> Path:
    """`<runs_root>/<kind>/<timestamp>`; a suffix keeps two runs started in the same second apart."""
    base = Path(runs_root) / kind / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def config_json(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (paths and other objects as strings), URLs with anything key-like
    in them hidden (a token in an endpoint's path must not reach a run folder)."""
    return hide_url_secrets(json.loads(json.dumps(dataclasses.asdict(config), default=str)))


def hide_url_secrets(value: Any) -> Any:
    """JSON-like `value` with key-like parts of its URL strings hidden (as config_json stores them)."""
    if isinstance(value, dict):
        return {k: hide_url_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_url_secrets(v) for v in value]
    return redact_url(value) if isinstance(value, str) and "://" in value else value


def check_resume(run_dir: Path, config: Any, stored: dict[str, Any] | None = None) -> None:
    """Raise unless `run_dir` is new or was started with the same settings, apart from the fields its config class
    declares in `MAY_CHANGE_ON_RESUME` (a nested config's fields as "agents.cloud_max_calls", or all of it as
    "agents"). `stored`: the settings on disk when they are not `config.json` itself."""
    record, may_change = config_json(config), type(config).MAY_CHANGE_ON_RESUME
    if stored is None:
        path = Path(run_dir) / "config.json"
        if not path.exists():
            return
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunFolderError(f"{path}: not readable as the run's settings ({e}); restore it, or choose a new "
                                 "--out (the run's other files are untouched)") from None
        if not isinstance(stored, dict):
            raise RunFolderError(f"{path}: holds {type(stored).__name__}, not the run's settings; restore it, or "
                                 "choose a new --out") from None
    # settings stored before URLs were redacted compare as they would be stored now
    stored, record = flat_settings(hide_url_secrets(stored)), flat_settings(record)
    # a field that moved into a nested config since the run started is compared at its new place
    for old_key, new_key in getattr(type(config), "MOVED_FIELDS", {}).items():
        if old_key in stored:
            stored[new_key] = stored.pop(old_key)
    # a field added after the run started (top-level or in a nested config) matches when it keeps its default:
    # the run's behaviour is unchanged
    defaults = flat_settings({f.name: json.loads(json.dumps(_plain(f.default), default=str))
                      for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING})
    for key, value in defaults.items():
        if key not in stored and not any(key.startswith(f"{other}.") for other in stored):
            stored[key] = value
    keys = dict.fromkeys([*stored, *record])
    diffs = [f"{k}: run has {stored.get(k)!r}, now {record.get(k)!r}"
             for k in keys if not _may_change(k, may_change) and stored.get(k) != record.get(k)]
    if diffs:
        raise RunFolderError(f"{run_dir}: this run was started with other settings ({'; '.join(diffs)}); "
                             "resume it with the same flags or choose a new --out")


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted keys ("agents.cloud_max_calls")."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _may_change(key: str, may_change: tuple[str, ...]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:n]) in may_change for n in range(1, len(parts) + 1))


def require_empty(run_dir: Path) -> None:
    """For runs that never resume: the folder must hold nothing but its lock (no earlier run's outputs)."""
    if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise RunFolderError(f"{run_dir}: run folder exists and is not empty; choose another --out "
                             "(nothing was written)")


@contextmanager
def locked_run_dir(run_dir: Path, what: str = "run") -> Iterator[Path]:
    """Hold `run_dir`'s lock for the block, creating the folder; refuse at once if another process holds it.
    The lock file stays (deleting it would let a waiting process lock a file nobody else sees), except in a folder
    this call created and nothing was written to: that folder is removed again, so a run that fails on its inputs
    leaves nothing behind."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file, not a run folder; pass another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file there, no permission, a read-only or virtual file system (/proc)
        raise RunFolderError(f"{run_dir}: cannot make the run folder there ({e.strerror}); pass another --out") from None
    lock_path = run_dir / LOCK_FILE
    lock = filelock.FileLock(lock_path, timeout=0, thread_local=False, is_singleton=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RunFolderError(f"{run_dir}: busy, another {what} is writing into it right now; wait for it or "
                             "choose another folder") from None
    try:
        yield run_dir
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            lock_path.unlink()
            run_dir.rmdir()
        lock.release()
