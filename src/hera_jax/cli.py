"""Shared entry point of the experiments' tyro CLIs: parse the config, check its declared ranges, run, and turn
user errors (a bad flag, bad input) into one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import logging
import os
import re
import select
import shlex
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import tyro

from hera_jax.compile_cache import enable as enable_compile_cache
from hera_jax.errors import ComputationAbandoned, HeraError
from hera_jax.limits import looks_like_a_key, validate

ConfigT = TypeVar("ConfigT")


def _join_lines(helptext: str) -> str:
    """A docstring as --help shows it: the lines of a paragraph joined into one (the terminal wraps them); a list
    item ("- ", "* ", "1. ") or an indented line on its own line; paragraphs apart."""
    paragraphs = re.split(r"\n[ \t]*\n", inspect.cleandoc(helptext))
    joined = []
    for paragraph in paragraphs:
        lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
        own_line = [i > 0 and (line.startswith((" ", "\t")) or re.match(r"([-*]|\d+\.) ", line) is not None)
                    for i, line in enumerate(lines)]
        joined.append("".join(line if i == 0 else ("\n" + line if own else " " + line.strip())
                              for i, (line, own) in enumerate(zip(lines, own_line))))
    return "\n\n".join(joined)


@contextlib.contextmanager
def _help_joins_docstring_lines(description: str | None = None) -> Iterator[None]:
    """tyro (1.0) joins a docstring's lines before removing their indentation, so every indented continuation line
    starts a new line in --help and sentences break mid-way. While a command's flags are parsed, its joining step is
    one that dedents first (nothing changes where a tyro release no longer has that step). The command's
    `description`, which tyro prints as it is (one line per paragraph, however wide), is wrapped to the terminal."""
    strings = getattr(tyro, "_strings", None)
    original = getattr(strings, "remove_single_line_breaks", None)
    if original is None:
        yield
        return
    wrapped_one = inspect.cleandoc(description) if description else None

    def join(helptext: str) -> str:
        joined = _join_lines(helptext)
        if wrapped_one is None or inspect.cleandoc(helptext) != wrapped_one:
            return joined
        width = max(40, min(shutil.get_terminal_size().columns, 120) - 2)
        return "\n".join(textwrap.fill(line, width, subsequent_indent=re.match(r"\s*", line).group())
                         if line.strip() else line for line in joined.split("\n"))

    strings.remove_single_line_breaks = join
    try:
        yield
    finally:
        strings.remove_single_line_breaks = original


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
    top-level field of `config_type` (e.g. a benchmark's own --batch-size) is that field, not a renamed one; the
    fields `config_type.MOVED_FIELDS` moved into its nested configs are renamed flags of that command only."""
    own = {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(config_type)} if config_type else set()
    moved = {f"--{old.replace('_', '-')}": f"--{new.replace('_', '-')}"
             for old, new in getattr(config_type, "MOVED_FIELDS", {}).items()}
    for arg in args:
        flag = arg.partition("=")[0]
        if flag in moved:
            return f"{flag} was renamed: use {moved[flag]}"
        if flag in RENAMED_FLAGS and flag not in own:
            return f"{flag} was renamed: use {RENAMED_FLAGS[flag]}"
    return None


def key_argument_problem(args: list[str]) -> str | None:
    """One line, itself redacted, about the first argument that looks like an API key, or None. Checked before tyro
    parses: tyro echoes an unknown flag or a stray positional value in its error box, key and all."""
    for position, arg in enumerate(args):
        if not looks_like_a_key(arg):
            continue
        flag, equals, _ = arg.partition("=")
        if arg.startswith("--") and equals and not looks_like_a_key(flag):
            where = flag
        elif position > 0 and args[position - 1].startswith("--") and "=" not in args[position - 1]:
            # the flag before may be a boolean switch that takes no value: name the position, and the flag as a guide
            where = f"argument {position + 1} (after {args[position - 1]})"
        else:
            where = f"argument {position + 1}"
        return (f"{where} looks like an API key; keys go only in the environment variable named by a "
                "--*-api-key-env flag, never on the command line (nothing was run)")
    return None


def _start_jax_backend() -> None:
    """Start JAX's backend and make a first host-to-device copy. On a GPU both are a large part of a small run's
    start-up (benchmarks/RESULTS.md, "where the GPU's extra second goes"), and XLA releases the GIL while they run,
    so on a thread they overlap the imports of the command's own modules."""
    try:
        import jax

        jax.device_put(0.0).block_until_ready()
    except Exception:  # noqa: BLE001 (no usable backend): the command itself meets it again and reports it
        pass


def run_cli(main: Callable[[ConfigT], object] | str, config_type: type[ConfigT] | str,
            description: str | None = None, args: list[str] | None = None, start_jax_backend: bool = False) -> None:
    """Parse `config_type` from the command line, check it and run `main(config)`; user errors, OS errors and Ctrl-C
    end in one line. `main` and `config_type` may be given as "module:name", imported only once a Ctrl-C during the
    import is handled and a mistyped --env is refused; the config's module is light (no JAX), and `main`'s (seconds
    of JAX) is imported only once the flags are checked, so a mistyped flag is reported at once. With
    `start_jax_backend`, JAX's backend starts on a thread while `main`'s modules import."""
    argv = sys.argv[1:] if args is None else args
    previous_hook = sys.unraisablehook
    redeliveries: list[threading.Timer] = []
    sys.unraisablehook = ours = _quiet_closed_pipes(previous_hook, redeliveries)
    config = None
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(_sigterm_as_interrupt())
        problem = key_argument_problem(argv) or env_name_problem(argv)
        if problem:
            _fail(f"error: {problem}", 2)
        config_type = _resolve(config_type)  # a light module: the flags are checked before `main` imports JAX
        problem = renamed_flag_problem(argv, config_type)
        if problem:
            _fail(f"error: {problem}", 2)
        with _help_joins_docstring_lines(description or inspect.getdoc(config_type)):
            config = tyro.cli(config_type, description=description, args=args)
        validate(config)
        if start_jax_backend:
            threading.Thread(target=_start_jax_backend, name="jax-backend", daemon=True).start()
        main = _resolve(main)
        if hasattr(config, "compile_cache"):
            enable_compile_cache(config.compile_cache)
        with _interrupts_logged_once():
            main(config)
    except (KeyboardInterrupt, Exception) as e:
        if raised_by_an_interrupt(e):
            status = 143 if _in_chain(e, Terminated) else 130  # as a shell reports SIGTERM / SIGINT
            if isinstance(e, ComputationAbandoned):  # work still runs in a thread: no teardown to wait on it
                print(interrupted_line(config), file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(status)
            _fail(interrupted_line(config), status)
        if isinstance(e, HeraError):
            _fail(f"error: {e}", 2)
        if isinstance(e, OSError):  # the file system or the network: a full disk, a folder path, no permission
            if isinstance(e, BrokenPipeError) and _stdout_gone():  # `--help | head`: the reader has all it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no complaint at exit either
                raise SystemExit(141) from None  # as a shell reports a process ended by SIGPIPE
            where = f"{e.filename}: " if e.filename else ""
            _fail(f"error: {where}{e.strerror or e}", 2)
        raise
    finally:
        stack.close()
        for pending in redeliveries:  # the run is over: a Ctrl-C sent again now would land after its last line
            pending.cancel()
        if sys.unraisablehook is ours:  # (`_fail` keeps its own, silent one for the exit)
            sys.unraisablehook = previous_hook


def raised_by_an_interrupt(error: BaseException) -> bool:
    """Whether `error` is a Ctrl-C (or a SIGTERM, taken as one), or was raised while one unwound: a library's cleanup
    failing on the way (py4j's `GatewayConnection` has no `shutdown_socket` when the interrupt came while it
    connected to a simulator's JVM, which the same Ctrl-C stopped) is the interrupt, not a new error."""
    return _in_chain(error, KeyboardInterrupt)


def _in_chain(error: BaseException | None, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's time limit), taken like a Ctrl-C: the run stops the same way, keeps what a
    Ctrl-C keeps and says how to resume; the exit status is 143, as a shell reports SIGTERM."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises Terminated in the main thread (left alone where the process already
    handles it, or off the main thread, where no handler can be set)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _NoInterruptRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and raised_by_an_interrupt(record.exc_info[1]))


@contextlib.contextmanager
def _interrupts_logged_once() -> Iterator[None]:
    """A library logging a Ctrl-C with its traceback on the root logger (py4j: "KeyboardInterrupt while sending
    command.") is dropped there: run_cli reports the interrupt in one line. Every other record goes on as before."""
    root, dropped = logging.getLogger(), _NoInterruptRecords()
    root.addFilter(dropped)
    try:
        yield
    finally:
        root.removeFilter(dropped)


def _stdout_gone() -> bool:
    """Whether the reader of stdout has closed it (the BrokenPipeError was stdout's, not a simulator's pipe)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll (Windows) or no real stdout: not a closed reader
        return False


def report_console(width_in_a_file: int):
    """A rich Console for a command's tables: the terminal's width; written to a file, $COLUMNS if set, else
    `width_in_a_file` (rich's own 80 would wrap wide tables that a log viewer shows whole)."""
    from rich.console import Console

    console = Console()
    set_in_env = os.environ.get("COLUMNS", "").isdigit()  # rich reads it (a non-number it ignores)
    return console if console.is_terminal or set_in_env else Console(width=width_in_a_file)


def _resolve(target):
    """A "module:name" string as the object it names; anything else as it is."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def env_name_problem(args: list[str]) -> str | None:
    """One line about a mistyped --env value, found before the command's modules load (seconds)."""
    from hera_jax.envs import UnknownEnvError, check_env_name  # no JAX behind it

    for position, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        if flag != "--env":
            continue
        value = value if equals else (args[position + 1] if position + 1 < len(args) else "")
        if not value or value.startswith("-"):  # no value (`--env --help`): the parser says so
            continue
        try:
            check_env_name(value)
        except UnknownEnvError as e:
            return str(e)
    return None


def interrupted_line(config: object | None) -> str:
    """What a Ctrl-C leaves, and how to go on: a run whose config declares `KEPT_ON_INTERRUPT` (what it keeps)
    continues when the same command runs again with the same --out."""
    if config is None:
        return "interrupted before the run started"
    kept = getattr(config, "KEPT_ON_INTERRUPT", None)
    if kept is None:
        return "interrupted: nothing of this run is kept; rerun the command to start it again"
    out = getattr(config, "out", None)
    if out is not None and not os.path.exists(out):  # stopped before the run made its folder: nothing to resume
        return "interrupted before the run wrote anything; rerun the command to start it"
    where = (f"--out {shlex.quote(str(out))}" if out is not None
             else "--out set to the run folder it printed when it started")
    return f"interrupted: {kept}; to resume, rerun the same command with {where}"


def _quiet_closed_pipes(previous: Callable, redeliveries: list[threading.Timer]) -> Callable:
    """An unraisable-exception hook for the run: a simulator's finalizer that finds its JVM's pipe already closed
    (ScienceWorld's gateway `__del__` while a Ctrl-C unwinds, the JVM stopped first) raises BrokenPipeError where
    nothing can catch it, and Python would print it as "Exception ignored in ..." over the one-line message. Those
    are dropped. A Ctrl-C that lands inside a finalizer or a garbage-collector callback (JAX has one) would be
    swallowed there and the run would go on: it is raised again as a fresh SIGINT, which the main code receives.
    Any other exception in a finalizer goes to `previous`."""

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                # from another thread, a moment later: raised here it would be swallowed again, by this hook
                again = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
                again.daemon = True
                redeliveries.append(again)
                again.start()
        elif not isinstance(unraisable.exc_value, (BrokenPipeError, ConnectionResetError)):
            previous(unraisable)

    return hook


def _fail(line: str, status: int) -> None:
    """One line on stderr, then exit; a simulator's or a pipe's complaint while the process winds down is not
    printed over it (a ScienceWorld gateway's __del__ raising BrokenPipeError at exit)."""
    print(line, file=sys.stderr)
    sys.unraisablehook = lambda unraisable: None
    raise SystemExit(status) from None
