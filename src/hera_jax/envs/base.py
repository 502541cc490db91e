"""The environment interface every adapter implements.

reset(task, variation) -> Observation ; step(action) -> StepResult. Adapters are thin wrappers over the real
simulators; rollouts, agents and the router never see simulator-specific objects.
"""

from __future__ import annotations

from hera_jax.errors import HeraError

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable


class StaleActionsError(RuntimeError):
    """Valid actions were asked for a state the simulator has already left."""


class LazyActions(Sequence[str]):
    """A state's valid actions, fetched from the simulator (and sorted) on first use.

    ScienceWorld spends most of a step's Java time listing them, while the stand-in agents read them only to make
    a mistake, and the router never does. `is_current()` says whether the simulator is still at the state; reading
    them after it has moved on raises `StaleActionsError` instead of answering for another state. `guard` lets the
    rollout engine run the fetch under its simulator watchdog.
    """

    def __init__(self, fetch: Callable[[], Sequence[str]], is_current: Callable[[], bool]):
        self._fetch = fetch
        self._is_current = is_current
        self._actions: tuple[str, ...] | None = None

    def guard(self, run: Callable[[Callable[[], Sequence[str]]], Sequence[str]]) -> None:
        fetch = self._fetch
        self._fetch = lambda: run(fetch)

    @property
    def fetched(self) -> bool:
        return self._actions is not None

    def _get(self) -> tuple[str, ...]:
        if self._actions is None:
            if not self._is_current():
                raise StaleActionsError("valid actions were asked for a state the simulator has already left")
            self._actions = tuple(sorted(self._fetch()))
        return self._actions

    def __getitem__(self, index):  # type: ignore[override]
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __contains__(self, action: object) -> bool:
        return action in self._get()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (LazyActions, tuple, list)):
            return self._get() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyActions({self._get()!r})" if self.fetched else "LazyActions(<not fetched>)"


@dataclasses.dataclass(frozen=True)
class Observation:
    observation: str
    task_description: str
    valid_actions: Sequence[str]  # a tuple, or `LazyActions`
    gold_path: tuple[str, ...] | None = None  # privileged: for oracle stand-ins only
    # privileged, for stand-ins only: the next action of the environment's own expert from this state, where it has
    # one that re-plans (ALFWorld's hand-coded expert); None = the stand-ins walk `gold_path` instead
    expert_action: str | None = None


@dataclasses.dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float
    score: float
    done: bool
    success: bool
    valid_actions: Sequence[str]  # a tuple, or `LazyActions`
    expert_action: str | None = None  # as in `Observation`


@dataclasses.dataclass(frozen=True)
class TaskVariation:
    task: str
    variation: int
    split: str  # "train" / "dev" / "test": the environment's own split of this variation


@runtime_checkable
class Env(Protocol):
    name: str
    version: str

    def task_names(self) -> list[str]: ...

    def variations(self, task: str, split: str) -> list[int]: ...

    def reset(self, task: str, variation: int) -> Observation: ...

    def step(self, action: str) -> StepResult: ...

    def close(self) -> None: ...


class UnknownTaskError(HeraError, ValueError):
    pass


class EnvUnavailableError(HeraError, RuntimeError):
    """The environment's package, data or server is missing; the message names the install command."""


class SimulatorProcesses:
    """The processes (a simulator's JVM) that a group of threads launches: an engine worker's, whose threads call
    `adopt()` first. After a Ctrl-C, `kill()` ends them, those still starting included, and any launched later, so
    the run need not wait seconds for a JVM to load or to close."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[Any] = []
        self.killed = False

    def adopt(self) -> None:
        """Make the processes the calling thread launches from now on (`register_simulator_process`) this group's."""
        _launcher.group = self

    def add(self, process: Any) -> None:
        with self._lock:
            self._processes = [p for p in self._processes if p.poll() is None] + [process]
            killed = self.killed
        if killed:
            _kill(process)

    def kill(self) -> int:
        """Kill every live process of the group, and from now on every one it launches; returns how many now."""
        with self._lock:
            self.killed = True
            processes, self._processes = self._processes, []
        return sum(_kill(p) for p in processes)


_launcher = threading.local()


def register_simulator_process(process: Any) -> None:
    """Called by an adapter for each process (with `poll()` and `kill()`) it launches for a simulator: it joins the
    calling thread's `SimulatorProcesses`, if any."""
    group = getattr(_launcher, "group", None)
    if group is not None:
        group.add(process)


def _kill(process: Any) -> bool:
    with contextlib.suppress(OSError):
        if process.poll() is None:
            process.kill()
            return True
    return False
