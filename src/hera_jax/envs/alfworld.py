"""ALFWorld adapter (the `alfworld` package's TextWorld engine), reading games from $ALFWORLD_DATA.

Task names are ALFWorld's six task types; splits map to its folders: train -> json_2.1.1/train, dev -> valid_seen,
test -> valid_unseen (the 134 unseen evaluation games once the unsupported movable/sliced ones are dropped, as
AlfredTWEnv does). A variation is `SPLIT_OFFSET[split] + index` into that split's sorted games of the task type, so
a variation alone says which game (and split) it is. Valid actions are the admissible commands; success = `won`.

Two privileged signals for the stand-in agents: the gold path is the game file's `walkthrough` (free: no replay at
reset), and every observation carries `expert_action`, the next action of ALFWorld's hand-coded (DAgger) expert,
which watches every action taken and so re-plans after anyone's mistake.

Reproducibility: the expert breaks ties with the global `random` module; each game gets its own generator, seeded
from the game's path, swapped in under a lock for each call into the game, so records do not depend on what else
the process (or another simulator slot) does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import re
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from hera_jax.envs.base import EnvUnavailableError, Observation, StepResult, UnknownTaskError

INSTALL_COMMAND = "pip install alfworld && alfworld-download && export ALFWORLD_DATA=~/.cache/alfworld"
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
SPLIT_DIRS = {"train": "train", "dev": "valid_seen", "test": "valid_unseen"}
SPLIT_OFFSET = {"train": 0, "dev": 100_000, "test": 200_000}  # train has < 100k games per task type

_TASK_LINE = re.compile(r"Your task is to:\s*(.+)")
_ARRIVE_AT_LOC = re.compile(r"^You arrive at loc \d+\.\s*")  # older game files prefix this to "go to" feedback
_WELCOME = re.compile(r"^-=.*?=-\s*")


# ---- pure parsing / mapping (unit-tested on ALFWorld transcripts) -------------------------------------------------


def split_intro(feedback: str) -> tuple[str, str]:
    """First feedback of a game -> (room description, task). Drops the "-= Welcome to TextWorld, ALFRED! =-" banner."""
    match = _TASK_LINE.search(feedback)
    if match is None:
        raise ValueError(f"no 'Your task is to:' line in ALFWorld intro: {feedback[:200]!r}")
    room = _WELCOME.sub("", feedback[: match.start()]).strip()
    return room, match.group(1).strip()


def clean_feedback(feedback: str) -> str:
    """Per-step feedback as ReAct-style agents see it: without the "You arrive at loc N." prefix."""
    return _ARRIVE_AT_LOC.sub("", feedback.strip())


def task_type_of(game_file: str | Path) -> str:
    """`.../pick_clean_then_place_in_recep-Lettuce-None-DiningTable-17/trial_.../game.tw-pddl` -> its task type."""
    folder = Path(game_file).parent.parent.name
    task_type = folder.split("-", 1)[0]
    if task_type not in TASK_TYPES:
        raise ValueError(f"{game_file}: folder {folder!r} does not start with an ALFWorld task type")
    return task_type


def is_supported_game(game_file: Path) -> bool:
    """Mirror AlfredTWEnv's filter: no movable/sliced trajectories, and the game was marked solvable."""
    if "movable" in str(game_file) or "Sliced" in str(game_file):
        return False
    try:
        return bool(json.loads(game_file.read_text()).get("solvable", False))
    except (OSError, json.JSONDecodeError):
        return False


@functools.lru_cache(maxsize=None)
def list_games(data_dir: Path, split: str) -> dict[str, list[Path]]:
    """Supported games of one split, grouped by task type, in a stable (sorted) order. Listed once per process:
    the filter reads every game file, and the engine may build a simulator per episode."""
    root = data_dir / "json_2.1.1" / SPLIT_DIRS[split]
    games: dict[str, list[Path]] = {t: [] for t in TASK_TYPES}
    for game_file in sorted(root.glob("*/*/game.tw-pddl")):
        if is_supported_game(game_file):
            games[task_type_of(game_file)].append(game_file)
    return games


def decode_variation(variation: int) -> tuple[str, int]:
    for split in ("test", "dev", "train"):
        if variation >= SPLIT_OFFSET[split]:
            return split, variation - SPLIT_OFFSET[split]
    raise ValueError(f"ALFWorld variations are non-negative, got {variation}")


def admissible_actions(state: dict[str, Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(state.get("admissible_commands") or ()))


def expert_action(state: dict[str, Any]) -> str | None:
    """The hand-coded expert's next action in a game state (its wrapper answers "look" when it has none)."""
    plan = state.get("extra.expert_plan")
    return plan[0] if plan else None


@functools.lru_cache(maxsize=None)
def walkthrough(game_file: Path) -> tuple[str, ...]:
    """The gold action path stored in the game file (read once per game: a reset need not parse the file again)."""
    try:
        return tuple(json.loads(game_file.read_text()).get("walkthrough") or ())
    except (OSError, json.JSONDecodeError) as e:
        raise EnvUnavailableError(f"{game_file}: unreadable ALFWorld game file ({e})") from e


def game_seed(game_file: Path) -> int:
    """Seed of a game's expert tie-breaks, from its split, game and trial folders: the same on every machine."""
    relative = "/".join(Path(game_file).parts[-4:])
    return int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "little")


_EXPERT_RANDOM = threading.Lock()


@contextlib.contextmanager
def expert_random(rng: random.Random) -> Iterator[None]:
    """Run a call into a game with `rng` as the hand-coded expert's `random` module (one game at a time)."""
    try:
        from alfworld.agents.expert import handcoded_expert
    except ImportError:  # a test's stand-in game, without the alfworld package
        with _EXPERT_RANDOM:
            yield
        return
    with _EXPERT_RANDOM:
        saved = handcoded_expert.random
        handcoded_expert.random = rng
        try:
            yield
        finally:
            handcoded_expert.random = saved


# ---- the environment ----------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    return Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()


def check_available(data_dir: Path) -> None:
    """Fail fast with one message naming what is missing and the command that installs it."""
    missing = []
    try:
        import alfworld  # noqa: F401
        import textworld  # noqa: F401
    except ImportError:
        missing.append("the alfworld package (pip install -e '.[alfworld]')")
    if not (data_dir / "json_2.1.1" / SPLIT_DIRS["test"]).is_dir():
        where = "$ALFWORLD_DATA" + ("" if "ALFWORLD_DATA" in os.environ else " (unset; default ~/.cache/alfworld)")
        missing.append(f"its game data: {data_dir}/json_2.1.1 not found; run alfworld-download and set {where}")
    if missing:
        raise EnvUnavailableError(f"ALFWorld needs {' and '.join(missing)}. Install with: {INSTALL_COMMAND}")


def memoize_pddl_translation() -> None:
    """Keep fast-downward's PDDL -> SAS translation of the last few games: TextWorld redoes it at every reset of a
    game (twice), which is most of a reset's time, and it depends only on the game's PDDL text. The translated task
    is only read afterwards; a reused simulator's episodes equal fresh ones (tests/test_envs_alfworld.py)."""
    import fast_downward

    if getattr(fast_downward.pddl2sas, "hera_memoized", False):
        return
    translate = functools.lru_cache(maxsize=8)(fast_downward.pddl2sas)
    translate.hera_memoized = True
    fast_downward.pddl2sas = translate


def start_textworld_game(game_file: Path):
    """Open one ALFWorld game with the wrappers AlfredTWEnv uses, plus the handcoded expert for gold paths."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import (
        AlfredDemangler,
        AlfredExpert,
        AlfredExpertType,
        AlfredInfos,
    )

    memoize_pddl_translation()
    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile", "expert_plan"])
    # AlfredDemangler(shuffle=False) names objects in sorted-id order: deterministic
    wrappers = [AlfredDemangler(shuffle=False), AlfredInfos, AlfredExpert(AlfredExpertType.HANDCODED)]
    return textworld.start(str(game_file), request_infos=infos, wrappers=wrappers)


class ALFWorld:
    name = "alfworld"
    # Reused between episodes, it gives the same records: each reset re-seeds the expert's tie-breaks and restarts
    # the game (and the expert) from its initial state. A loaded game is kept for the next episode of the same game
    # (the engine runs a variation's episodes in a row), which saves its load.
    reuse_safe = True

    def __init__(
        self,
        data_dir: str | Path | None = None,
        step_limit: int = 50,
        gold_path: bool = True,
        start_game: Callable[[Path], Any] | None = None,  # injectable for tests; default opens a TextWorld game
    ):
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        if start_game is None:
            check_available(self.data_dir)
            start_game = start_textworld_game
        self._start_game = start_game
        self.version = _package_version("alfworld")
        self.step_limit = step_limit
        self.with_gold_path = gold_path
        self._games: dict[str, dict[str, list[Path]]] = {}
        self._game = None
        self._game_file: Path | None = None
        self._rng = random.Random(0)
        self._steps = 0

    def task_names(self) -> list[str]:
        return list(TASK_TYPES)

    def _split_games(self, split: str) -> dict[str, list[Path]]:
        if split not in SPLIT_DIRS:
            raise ValueError(f"split must be one of {list(SPLIT_DIRS)}, got {split!r}")
        if split not in self._games:
            self._games[split] = list_games(self.data_dir, split)
        return self._games[split]

    def _check_task(self, task: str) -> None:
        if task not in TASK_TYPES:
            raise UnknownTaskError(f"unknown ALFWorld task type {task!r}; known: {', '.join(TASK_TYPES)}")

    def variations(self, task: str, split: str) -> list[int]:
        self._check_task(task)
        return [SPLIT_OFFSET[split] + i for i in range(len(self._split_games(split)[task]))]

    def game_file(self, task: str, variation: int) -> Path:
        self._check_task(task)
        split, index = decode_variation(variation)
        games = self._split_games(split)[task]
        if not 0 <= index < len(games):
            raise UnknownTaskError(
                f"ALFWorld {task} has {len(games)} {split} games; variation {variation} is out of range"
            )
        return games[index]

    def reset(self, task: str, variation: int) -> Observation:
        game_file = self.game_file(task, variation)
        if self._game is not None and self._game_file != game_file:
            self.close()
        self._rng = random.Random(game_seed(game_file))
        with expert_random(self._rng):
            if self._game is None:
                self._game, self._game_file = self._start_game(game_file), game_file
            state = self._game.reset()
        self._steps = 0
        room, task_description = split_intro(state["feedback"])
        return Observation(
            observation=room,
            task_description=task_description,
            valid_actions=admissible_actions(state),
            gold_path=walkthrough(game_file) if self.with_gold_path else None,
            expert_action=expert_action(state),
        )

    def step(self, action: str) -> StepResult:
        with expert_random(self._rng):
            state, reward, done = self._game.step(action)
        self._steps += 1
        won = bool(state.get("won"))
        return StepResult(
            observation=clean_feedback(state["feedback"]),
            reward=float(reward or 0.0),
            score=1.0 if won else 0.0,
            done=bool(done) or won or self._steps >= self.step_limit,
            success=won,
            valid_actions=admissible_actions(state),
            expert_action=expert_action(state),
        )

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game, self._game_file = None, None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
