"""JAX's persistent compilation cache, on by default for every command that compiles (il, rl_iter, evaluate, sweep).

A second process with the same shapes loads its XLA executables from disk instead of compiling them again; on a
small run most of the wall time is compilation (benchmarks/RESULTS.md, "Compile cache"). Each config's
`--compile-cache` moves it; `--compile-cache None` turns it off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# The user's cache folder (XDG convention), not the project tree.
DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hera_jax" / "xla"


def enable(folder: Path | None) -> None:
    """Use `folder` as JAX's persistent compilation cache (None: leave it off). Every executable is cached, however
    fast it compiled: the routers' programs are small, and a start-up is their sum."""
    if folder is None:
        return
    import jax

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from hera_jax.errors import HeraError

        raise HeraError(f"--compile-cache {folder}: cannot create it ({e.strerror}); pass another folder or None")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    drop_cut_entries(folder)


CHECKED_MARKER = ".hera-checked"  # its mtime: when the entries were last checked


def drop_cut_entries(folder: Path) -> list[str]:
    """Delete cache entries cut short (JAX writes them in place: a kill or a full disk mid-write leaves a truncated
    file, which every later process fails to read, warns about and compiles again, for good). Only entries written
    since the last check are read, so a start-up pays for the previous run's new entries, not the whole cache.
    Returns the names deleted."""
    try:
        from jax._src.compilation_cache import decompress_executable
    except ImportError:  # another JAX layout: leave the cache to JAX
        return []
    marker = folder / CHECKED_MARKER
    since = marker.stat().st_mtime - 60 if marker.exists() else 0.0  # a minute of slack for clock granularity
    started = time.time()
    dropped = []
    for entry in folder.glob("*-cache"):
        try:
            if entry.stat().st_mtime < since:
                continue
            decompress_executable(entry.read_bytes())
        except FileNotFoundError:  # another process replaced or evicted it
            continue
        except Exception:  # noqa: BLE001 (zlib.error, zstd errors): unreadable, so useless to JAX too
            entry.unlink(missing_ok=True)
            dropped.append(entry.name)
    try:
        marker.touch()
        os.utime(marker, (started, started))
    except OSError:  # a read-only cache: checked again next time
        pass
    return dropped
