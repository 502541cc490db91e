"""The persistent XLA compile cache: on by default for the commands that compile, movable, and off with None."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tyro

from hera_jax.compile_cache import DEFAULT_DIR
from hera_jax.evaluate.evaluate_app import EvalConfig
from hera_jax.rl.config import RLConfig
from hera_jax.router.il_app import ILConfig
from hera_jax.sweep_app import SweepConfig

COMPILE = ("import sys, jax, jax.numpy as jnp; from pathlib import Path; from hera_jax.compile_cache import enable; "
           "enable(None if sys.argv[1] == 'None' else Path(sys.argv[1])); "
           "print(float(jax.jit(lambda x: jnp.tanh(x) * 3.0)(jnp.ones(7)).sum()))")


def test_every_compiling_command_has_it_on_by_default_and_none_turns_it_off(tmp_path):
    for config_type in (ILConfig, RLConfig, EvalConfig, SweepConfig):
        assert config_type().compile_cache == DEFAULT_DIR
        assert tyro.cli(config_type, args=["--compile-cache", "None"]).compile_cache is None
        assert tyro.cli(config_type, args=["--compile-cache", str(tmp_path)]).compile_cache == tmp_path
    # a resumed RL run or evaluation may move the cache: it never changes results
    assert "compile_cache" in RLConfig.MAY_CHANGE_ON_RESUME and "compile_cache" in EvalConfig.MAY_CHANGE_ON_RESUME


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_a_compiled_program_lands_in_the_cache_folder_and_a_second_process_reads_it(tmp_path):
    cache = tmp_path / "xla"
    first = subprocess.run([sys.executable, "-c", COMPILE, str(cache)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    entries = {p.name for p in cache.iterdir()}
    assert entries, "nothing was written to the compile cache"
    second = subprocess.run([sys.executable, "-c", COMPILE, str(cache)], capture_output=True, text=True, timeout=300)
    assert second.stdout == first.stdout
    assert {p.name for p in cache.iterdir()} == entries  # the same program: read back, not compiled anew
    off = subprocess.run([sys.executable, "-c", COMPILE, "None"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert off.returncode == 0 and off.stdout == first.stdout


def test_an_entry_cut_short_is_dropped_and_compiled_again_without_a_warning(tmp_path):
    """JAX writes entries in place: a kill or a full disk mid-write left a truncated file that every later process
    warned about and compiled again, for good."""
    import os

    from hera_jax.compile_cache import CHECKED_MARKER, drop_cut_entries

    cache = tmp_path / "xla"
    first = subprocess.run([sys.executable, "-c", COMPILE, str(cache)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    [entry] = [p for p in cache.glob("*-cache") if "jit__lambda" in p.name]
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # what a write cut by a full disk leaves
    second = subprocess.run([sys.executable, "-c", COMPILE, str(cache)], capture_output=True, text=True, timeout=300)
    assert second.stdout == first.stdout and "Error reading persistent compilation cache" not in second.stderr
    assert entry.read_bytes() == whole  # compiled again and written whole
    # only entries newer than the last check are read: an old one is not opened again
    old = cache / "jit_old-0-cache"
    old.write_bytes(b"not an executable")
    os.utime(old, (1e9, 1e9))
    (cache / CHECKED_MARKER).touch()
    assert drop_cut_entries(cache) == [] and old.exists()
    os.utime(old, None)  # written now: checked, unreadable, dropped
    assert drop_cut_entries(cache) == [old.name] and not old.exists()
