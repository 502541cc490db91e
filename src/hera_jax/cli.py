"""Shared entry point of the experiments' tyro CLIs: parse the config, check its declared ranges, run, and turn
user errors (a bad flag, bad input) into one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

from hera_jax.errors import HeraError
from hera_jax.limits import validate

ConfigT = TypeVar("ConfigT")


def run_cli(main: Callable[[ConfigT], object], config_type: type[ConfigT], description: str | None = None,
            args: list[str] | None = None) -> None:
    try:
        config = tyro.cli(config_type, description=description, args=args)
        validate(config)
        main(config)
    except HeraError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
