"""What the router and the agents see at one step, and its stable identity (`state_key`).

The router's state text is the task description plus the last `history_k` (action, observation) pairs and the
current observation. Identical texts across trajectories share a `state_key`, which is how RL groups visits and
how the features cache avoids embedding a state twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence


def normalize_text(text: str) -> str:
    """Collapse whitespace runs to one space and strip; case is kept (it carries meaning in observations).
    str.split() splits on exactly the characters regex `\\s` matches (str.isspace) and is faster than a substitution
    (benchmarks/RESULTS.md, "the validating first read"): every step of every read and rollout goes through here."""
    return " ".join(text.split())


def normalize_action(action: str) -> str:
    """Canonical form used to compare two actions: lower case, single spaces."""
    return normalize_text(action).lower()


@dataclasses.dataclass(frozen=True)
class AgentState:
    """Everything an agent may look at before acting.

    `gold_path` and `expert_action` are privileged information that only stand-ins read; LLM agents must ignore them.
    """

    task_description: str
    observation: str
    # A tuple, or `envs.base.LazyActions` (listed on first read). Left out of == and hash: they follow from the
    # simulator's state, and comparing them would make ScienceWorld list them at every step.
    valid_actions: Sequence[str] = dataclasses.field(compare=False)
    history: tuple[tuple[str, str], ...] = ()  # (action, observation that followed), oldest first
    step: int = 0
    gold_path: tuple[str, ...] | None = None
    env: str = ""
    task: str = ""
    variation: int = -1
    expert_action: str | None = None  # the environment's re-planning expert's next action (envs.base.Observation)

    @property
    def past_actions(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.history)


def _clip(text: str, max_chars: int) -> str:
    text = normalize_text(text)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


# The router's state-text defaults (every CLI and manifest reader falls back to these; rollout/episode.py too).
DEFAULT_HISTORY_K = 3
DEFAULT_MAX_OBS_CHARS = 400


def state_text(
    state: AgentState, history_k: int = DEFAULT_HISTORY_K, max_obs_chars: int = DEFAULT_MAX_OBS_CHARS
) -> str:
    """The canonical text the router embeds: task, last `history_k` steps, current observation."""
    lines = [f"Task: {_clip(state.task_description, 2 * max_obs_chars)}"]
    recent = state.history[-history_k:] if history_k > 0 else ()
    for action, observation in recent:
        lines.append(f"> {normalize_text(action)}")
        lines.append(_clip(observation, max_obs_chars))
    lines.append(f"Now: {_clip(state.observation, max_obs_chars)}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class StateTextParts:
    """The parts of a `state_text`, as they appear in it (normalised, clipped)."""

    task: str
    history: tuple[tuple[str, str], ...]  # (action, observation that followed), oldest first
    observation: str


def parse_state_text(text: str) -> StateTextParts:
    """Inverse of `state_text`: its lines are "Task: ...", then ("> action", observation) pairs, then "Now: ...".

    Each part is one line (`normalize_text` removes newlines), so the layout is read by position, not by content:
    an observation that itself starts with "> " is still an observation.
    """
    lines = text.split("\n")
    if len(lines) < 2 or not lines[0].startswith("Task: ") or not lines[-1].startswith("Now: ") or len(lines) % 2:
        raise ValueError(f"not a state text (want 'Task: ...', action/observation line pairs, 'Now: ...'): {text[:80]!r}")
    middle = lines[1:-1]
    actions, observations = middle[0::2], middle[1::2]
    if any(not a.startswith("> ") for a in actions):
        raise ValueError(f"not a state text (history action lines start with '> '): {text[:80]!r}")
    history = tuple((a[2:], o) for a, o in zip(actions, observations))
    return StateTextParts(lines[0][len("Task: "):], history, lines[-1][len("Now: "):])


def state_key(text: str) -> str:
    """Stable 16-hex-digit id of a state text; whitespace differences do not change it."""
    return hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()[:16]


def state_keys(texts: Sequence[str]) -> list[str]:
    return [state_key(t) for t in texts]
