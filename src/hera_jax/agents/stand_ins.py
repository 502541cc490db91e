"""Stand-in agents for machines where no LLM runs. They are NOT language models and are labelled as such.

- `GoldPathOracle` (cloud stand-in): follows the environment's gold action path.
- `ExpertOracle` (cloud stand-in): follows the environment's own expert, which acts from the current state and so
  re-plans after anyone's mistake (ALFWorld's hand-coded expert). `--agents.cloud oracle` builds it where the
  environment's profile says so.
- `PerturbedGoldDevice` (device stand-in): follows the gold path but errs with a probability that depends on what
  the state needs next (navigation is easy, handling objects harder, the task's science steps hardest) and grows
  with the step index; its mistakes pick the right verb with a wrong object, like a small model that knows the
  routine but not the details. The error decision is a deterministic hash of (seed, state text), so the same state
  always gets the same device action and the "needs cloud" label is a function of the state.
- `PerturbedExpertDevice` (device stand-in): the same mistakes around the environment's expert instead of the gold
  path.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import ClassVar

from hera_jax.agents.base import AgentStep
from hera_jax.state import AgentState, normalize_action

STAND_IN_NOTE = "stand-in, not an LLM"

# Error probability by the kind of action the gold path needs next.
_EASY_VERBS = ("look around", "go to", "open door", "close door", "inventory", "look at", "teleport")
_HARD_VERBS = ("focus on", "use", "mix", "connect", "disconnect", "wait", "pour", "dunk", "read", "flush")
# TextWorldExpress / ALFWorld verbs. None of these prefixes starts a ScienceWorld action, so ScienceWorld
# difficulties are unchanged: navigation is easy; the recipe steps and commonsense placements are hard.
_EASY_VERBS += ("move north", "move south", "move east", "move west")
_HARD_VERBS += ("cook ", "slice ", "dice ", "chop ", "prepare meal", "clean ", "heat ", "cool ")
_PLACEMENT_VERB, _SCIENCEWORLD_PUT_DOWN = "put ", "put down"  # TWC/ALFWorld "put X in/on Y"; SW's "put down X"


def gold_next_action(gold_path: tuple[str, ...], past_actions: tuple[str, ...]) -> str | None:
    """The gold action still to be done: walk the gold path along the actions taken, skipping detours."""
    position = 0
    for action in past_actions:
        if position < len(gold_path) and normalize_action(action) == normalize_action(gold_path[position]):
            position += 1
    return gold_path[position] if position < len(gold_path) else None


def reference_action(state: AgentState) -> str | None:
    """The action the stand-ins treat as right here: the environment's expert's next action where it has a
    re-planning expert, else the gold action still to be done (None past the gold path's end)."""
    if state.expert_action is not None:
        return state.expert_action
    if state.gold_path is None:
        raise ValueError("the stand-in agents need an environment that provides a gold path or an expert")
    return gold_next_action(state.gold_path, state.past_actions)


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def action_difficulty(action: str) -> str:
    a = normalize_action(action)
    if a.startswith(_EASY_VERBS):
        return "easy"
    if a.startswith(_HARD_VERBS):
        return "hard"
    if a.startswith(_PLACEMENT_VERB) and not a.startswith(_SCIENCEWORLD_PUT_DOWN):
        return "hard"
    return "medium"


# ALFWorld's commands, with ScienceWorld's philosophy: moving about and looking are easy, handling objects is
# harder, the task's key steps (placing, cleaning, heating, cooling, using a lamp, slicing) are hardest. Its own
# table, since "move X to Y" is ALFWorld's placement but an ordinary ScienceWorld action.
_EXPERT_EASY = ("go to", "look", "inventory", "examine")
_EXPERT_HARD = ("move ", "put ", "clean ", "heat ", "cool ", "use ", "slice ")


def expert_action_difficulty(action: str) -> str:
    a = normalize_action(action)
    if a.startswith(_EXPERT_EASY):
        return "easy"
    if a.startswith(_EXPERT_HARD):
        return "hard"
    return "medium"


@dataclasses.dataclass
class GoldPathOracle:
    """Cloud stand-in: the environment's gold path (an oracle, not an LLM)."""

    name: str = "gold-path-oracle"
    is_stand_in: bool = True
    fallback_action: str = "look around"

    def act(self, state: AgentState) -> AgentStep:
        if state.gold_path is None:
            raise ValueError(f"{self.name} needs an environment that provides a gold path")
        action = gold_next_action(state.gold_path, state.past_actions)
        return AgentStep(action=action if action is not None else self.fallback_action)

    def describe(self) -> dict:
        return {"name": self.name, "kind": "stand-in", "note": f"{STAND_IN_NOTE}: follows the gold action path"}


@dataclasses.dataclass
class ExpertOracle:
    """Cloud stand-in: the environment's own expert, acting from the current state (an oracle, not an LLM)."""

    name: str = "replanning-expert-oracle"
    is_stand_in: bool = True
    fallback_action: str = "look"

    def act(self, state: AgentState) -> AgentStep:
        if state.expert_action is None:
            raise ValueError(f"{self.name} needs an environment with a re-planning expert (e.g. alfworld)")
        return AgentStep(action=state.expert_action or self.fallback_action)

    def describe(self) -> dict:
        return {"name": self.name, "kind": "stand-in",
                "note": f"{STAND_IN_NOTE}: the environment's expert, re-planning from the current state"}


@dataclasses.dataclass
class PerturbedGoldDevice:
    """Device stand-in: gold path with state-dependent mistakes (not an LLM)."""

    seed: int = 0
    error_easy: float = 0.05
    error_medium: float = 0.3
    error_hard: float = 0.7
    error_per_step: float = 0.01  # long-horizon brittleness: errors get likelier deeper into an episode
    name: str = "perturbed-gold-device"
    note: ClassVar[str] = "gold path with state-dependent mistakes"
    is_stand_in: bool = True
    stateless: ClassVar[bool] = True  # `act` depends on the state alone: the engine may call it from several threads

    def difficulty(self, action: str) -> str:
        return action_difficulty(action)

    def error_probability(self, gold_action: str, step: int) -> float:
        base = {"easy": self.error_easy, "medium": self.error_medium, "hard": self.error_hard}
        return min(1.0, base[self.difficulty(gold_action)] + self.error_per_step * step)

    def act(self, state: AgentState) -> AgentStep:
        gold = reference_action(state)
        if gold is None:
            return AgentStep(action="look around")
        key = (self.seed, state.task, state.variation, state.step, state.past_actions, state.observation)
        if _uniform("err", *key) >= self.error_probability(gold, state.step):
            return AgentStep(action=gold)
        return AgentStep(action=self._mistake(gold, state.valid_actions, key))

    @staticmethod
    def _mistake(gold: str, valid_actions: tuple[str, ...], key: tuple) -> str:
        gold_norm = normalize_action(gold)
        verb = " ".join(gold_norm.split()[:2])
        others = [a for a in valid_actions if normalize_action(a) != gold_norm]
        same_verb = [a for a in others if normalize_action(a).startswith(verb)]
        pool = same_verb or others
        if not pool:
            return "look around"
        pool = sorted(pool)
        return pool[int(_uniform("pick", *key) * len(pool))]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "stand-in",
            "note": f"{STAND_IN_NOTE}: {self.note}",
            "seed": self.seed,
            "error_easy": self.error_easy,
            "error_medium": self.error_medium,
            "error_hard": self.error_hard,
            "error_per_step": self.error_per_step,
        }


@dataclasses.dataclass
class PerturbedExpertDevice(PerturbedGoldDevice):
    """Device stand-in: the environment's re-planning expert with the same state-dependent mistakes (not an LLM)."""

    name: str = "perturbed-expert-device"
    note: ClassVar[str] = "the environment's re-planning expert with state-dependent mistakes"

    def difficulty(self, action: str) -> str:
        return expert_action_difficulty(action)

    def act(self, state: AgentState) -> AgentStep:
        if state.expert_action is None:
            raise ValueError(f"{self.name} needs an environment with a re-planning expert (e.g. alfworld)")
        return super().act(state)
