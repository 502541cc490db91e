"""TextWorldExpress adapter: TWC (household tidy-up) and CookingWorld, offline, with gold paths and valid actions.

`make_env("textworld_express:twc")` picks the game after the colon. Each game offers a few difficulty presets as
its task names (e.g. `twc-easy`), so routers can be trained on some presets and tested on unseen ones. Variations
are the game's own seeds: its train, dev and test folds use disjoint seed ranges (and, for TWC, disjoint object
lists), so the fold of a seed is known from the seed alone.
"""

from __future__ import annotations

from importlib import metadata

from hera_jax.envs.base import EnvUnavailableError, Observation, StepResult, UnknownTaskError
from hera_jax.envs.jvm import constant_identity_hashes

INSTALL_HINT = "pip install textworld-express (needs Java on PATH)"
FOLDS = ("train", "dev", "test")

# Task name -> TextWorldExpress generation parameters. Ranges follow the game's README (TWC: numLocations 1-3,
# numItemsToPutAway 1-4 here; CookingWorld: numLocations 1-11, numIngredients 1-5, numDistractorItems 0-10).
# Gold paths (mean length over 20 train seeds, after `drop_move_reversals`): twc 3 / 8 / 13 / 15.4 steps,
# cookingworld 13 / 20 / 21.5 steps (the doors presets wandered: 20 and 23 before).
TASK_PRESETS: dict[str, dict[str, str]] = {
    "twc": {
        "twc-easy": "numLocations=1,numItemsToPutAway=1,includeDoors=0,limitInventorySize=0",
        "twc-medium": "numLocations=1,numItemsToPutAway=3,includeDoors=0,limitInventorySize=0",
        "twc-hard": "numLocations=2,numItemsToPutAway=4,includeDoors=0,limitInventorySize=0",
        "twc-doors": "numLocations=3,numItemsToPutAway=4,includeDoors=1,limitInventorySize=0",
    },
    "cookingworld": {
        "cookingworld-kitchen": "numLocations=1,numIngredients=2,numDistractorItems=3,includeDoors=0,"
        "limitInventorySize=0",
        "cookingworld-house": "numLocations=3,numIngredients=3,numDistractorItems=5,includeDoors=0,"
        "limitInventorySize=0",
        "cookingworld-doors": "numLocations=6,numIngredients=3,numDistractorItems=5,includeDoors=1,"
        "limitInventorySize=0",
    },
}


_OPPOSITE_MOVES = {"move north": "move south", "move south": "move north", "move east": "move west",
                   "move west": "move east"}


def drop_move_reversals(gold_path: tuple[str, ...]) -> tuple[str, ...]:
    """The gold path without back-and-forth walks ('move west', 'move east' with nothing between: back in the same
    room with nothing changed) and without moves after its last other action (the task is done by then). With doors,
    the simulator's gold path wanders at random, so resets of one seed gave paths of 15 to 35 steps; without the
    wandering every reset gives the same path, as the other presets do."""
    kept: list[str] = []
    for action in gold_path:
        if kept and _OPPOSITE_MOVES.get(action.strip().lower()) == kept[-1].strip().lower():
            kept.pop()
        else:
            kept.append(action)
    while kept and kept[-1].strip().lower() in _OPPOSITE_MOVES:
        kept.pop()
    return tuple(kept)


class TextWorldExpress:
    """One TextWorldExpress game (its JVM is started once and reused across episodes)."""

    reuse_safe = True  # a reused JVM gives the same records as a fresh one (envs/jvm.py)

    def __init__(self, game: str = "twc", step_limit: int = 100):
        if game not in TASK_PRESETS:
            raise UnknownTaskError(
                f"unknown TextWorldExpress game {game!r}; supported: "
                + ", ".join(f"textworld_express:{g}" for g in TASK_PRESETS)
            )
        try:
            import textworld_express.textworld_express as package
            from textworld_express import TextWorldExpressEnv
        except ImportError as e:
            raise EnvUnavailableError(f"TextWorldExpress is not installed: {INSTALL_HINT}") from e
        self.game = game
        self.name = f"textworld_express:{game}"
        self.version = metadata.version("textworld-express")
        self.presets = dict(TASK_PRESETS[game])
        constant_identity_hashes(package)  # makes the JVM reusable between episodes (envs/jvm.py)
        self._env = TextWorldExpressEnv(envStepLimit=step_limit)
        self._loaded_task: str | None = None
        self._folds: dict[str, list[int]] = {}

    def task_names(self) -> list[str]:
        return list(self.presets)

    def _load(self, task: str) -> None:
        if task not in self.presets:
            raise UnknownTaskError(
                f"unknown {self.name} task {task!r}; known tasks: {', '.join(self.presets)}"
            )
        if self._loaded_task != task:
            self._env.load(self.game, self.presets[task])
            self._loaded_task = task
        if not self._folds:  # seed folds depend on the game only, not on the preset
            self._folds = {
                "train": list(self._env.getValidSeedsTrain()),
                "dev": list(self._env.getValidSeedsDev()),
                "test": list(self._env.getValidSeedsTest()),
            }

    def variations(self, task: str, split: str) -> list[int]:
        if split not in FOLDS:
            raise ValueError(f"split must be one of {list(FOLDS)}, got {split!r}")
        self._load(task)
        return list(self._folds[split])

    def fold_of(self, seed: int) -> str:
        for fold in FOLDS:
            if seed in self._folds[fold]:
                return fold
        raise ValueError(f"seed {seed} is in none of {self.name}'s train/dev/test folds")

    def reset(self, task: str, variation: int) -> Observation:
        self._load(task)
        # The simulator accepts any (seed, fold) pair silently; pass the seed's own fold so objects match the split.
        observation, info = self._env.reset(seed=variation, gameFold=self.fold_of(variation), generateGoldPath=True)
        return Observation(
            observation=observation,
            task_description=info["taskDescription"],
            valid_actions=tuple(info["validActions"]),
            gold_path=drop_move_reversals(tuple(self._env.getGoldActionSequence())),
        )

    def step(self, action: str) -> StepResult:
        observation, reward, done, info = self._env.step(action)
        return StepResult(
            observation=observation,
            reward=float(reward),
            score=float(info["score"]),
            done=bool(done),
            success=bool(info["tasksuccess"]),
            valid_actions=tuple(info["validActions"]),
        )

    def close(self) -> None:
        self._env.close()
