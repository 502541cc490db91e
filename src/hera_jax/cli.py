"""Shared entry point of the experiments' tyro CLIs: parse the config, check its declared ranges, run, and turn
user errors (a bad flag, bad input) into one line on stderr and exit status 2."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

from hera_jax.compile_cache import enable as enable_compile_cache
from hera_jax.errors import HeraError
from hera_jax.limits import validate

ConfigT = TypeVar("ConfigT")


def _join_lines(helptext: str) -> str:
    """A docstring as --help shows it: the lines of a paragraph joined into one (the terminal wraps them), a list
    item ("- ", "* ") on its own line, paragraphs apart."""
    paragraphs = re.split(r"\n[ \t]*\n", inspect.cleandoc(helptext))
    joined = []
    for paragraph in paragraphs:
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        joined.append("".join(line if i == 0 else ("\n" if line.startswith(("- ", "* ")) else " ") + line
                              for i, line in enumerate(lines)))
    return "\n\n".join(joined)


# tyro (1.0) joins a docstring's lines before removing their indentation, so every indented continuation line
# starts a new line in --help and sentences break mid-way. Its joining step is replaced by one that dedents first;
# skipped if a tyro release no longer has that step.
if hasattr(getattr(tyro, "_strings", None), "remove_single_line_breaks"):
    tyro._strings.remove_single_line_breaks = _join_lines


# Flags that moved into the nested `agents` / `features` / `engine` configs, old spelling -> new spelling.
_AGENT_FLAGS = ("cloud", "device", "device-seed", "device-model", "device-gguf-file", "device-threads",
                "max-new-tokens", "cloud-base-url", "cloud-model", "cloud-api-key-env", "cloud-max-calls",
                "cloud-max-tokens", "cloud-timeout-s", "cloud-max-call-s", "cloud-max-reply-tokens", "cloud-price-in",
                "cloud-price-out")
_FEATURE_FLAGS = ("encoder", "embedding-dim", "scalar-features", "horizon", "text-design")
_ENGINE_FLAGS = ("batch-size", "workers", "ray-address", "env-call-timeout-s", "max-episode-retries",
                 "fresh-env-per-episode")
RENAMED_FLAGS: dict[str, str] = {
    **{f"--{flag}": f"--agents.{flag}" for flag in _AGENT_FLAGS},
    **{f"--{flag}": f"--features.{flag}" for flag in _FEATURE_FLAGS},
    **{f"--{flag}": f"--engine.{flag}" for flag in _ENGINE_FLAGS},
}


def renamed_flag_problem(args: list[str], config_type: type | None = None) -> str | None:
    """One line naming the new spelling of the first flag in `args` that was renamed, or None. A flag that is a
    top-level field of `config_type` (e.g. a benchmark's own --batch-size) is that field, not a renamed one."""
    own = {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(config_type)} if config_type else set()
    for arg in args:
        flag = arg.partition("=")[0]
        if flag in RENAMED_FLAGS and flag not in own:
            return f"{flag} was renamed: use {RENAMED_FLAGS[flag]}"
    return None


def run_cli(main: Callable[[ConfigT], object], config_type: type[ConfigT], description: str | None = None,
            args: list[str] | None = None) -> None:
    problem = renamed_flag_problem(sys.argv[1:] if args is None else args, config_type)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    _quiet_closed_pipes_at_cleanup()
    try:
        config = tyro.cli(config_type, description=description, args=args)
        validate(config)
        if hasattr(config, "compile_cache"):
            enable_compile_cache(config.compile_cache)
        main(config)
    except HeraError as e:
        _fail(f"error: {e}", 2)
    except OSError as e:  # the file system or the network: a full disk, a path that is a folder, no permission
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"error: {where}{e.strerror or e}", 2)
    except KeyboardInterrupt:
        _fail("interrupted: finished episodes and iterations are kept; rerun the same command with --out set to "
              "the run folder (printed when the run started) to resume", 130)


def _quiet_closed_pipes_at_cleanup() -> None:
    """A simulator's finalizer that finds its JVM's pipe already closed (ScienceWorld's gateway `__del__` after a
    Ctrl-C stopped the JVM first) raises BrokenPipeError where nothing can catch it; Python prints it as "Exception
    ignored in ...". Those are dropped; any other exception in a finalizer is still printed."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, (BrokenPipeError, ConnectionResetError)):
            previous(unraisable)

    sys.unraisablehook = hook


def _fail(line: str, status: int) -> None:
    """One line on stderr, then exit; a simulator's or a pipe's complaint while the process winds down is not
    printed over it (a ScienceWorld gateway's __del__ raising BrokenPipeError at exit)."""
    print(line, file=sys.stderr)
    sys.unraisablehook = lambda unraisable: None
    raise SystemExit(status) from None
