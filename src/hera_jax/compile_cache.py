"""JAX's persistent compilation cache, on by default for every command that compiles (il, rl_iter, evaluate, sweep).

A second process with the same shapes loads its XLA executables from disk instead of compiling them again; on a
small run most of the wall time is compilation (benchmarks/RESULTS.md, "Compile cache"). Each config's
`--compile-cache` moves it; `--compile-cache None` turns it off.
"""

from __future__ import annotations

import os
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
