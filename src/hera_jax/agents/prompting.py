"""ReAct-style prompts per environment and mapping of a model's reply onto the environment's valid actions.

The prompt is: instructions + action format, few-shot examples (ScienceWorld gold paths, shipped as JSON and
regenerable with `fewshot_from_env`), the task, the recent (action, observation) history and the current
observation. It is built so the few-shot prefix is identical across steps: local backends reuse its KV cache.

A reply is mapped onto a valid action exactly, then after normalising, then by closest match. A reply that maps
onto nothing is NOT replaced by a valid action: the agent returns the model's own text with `parse_ok=False`, so
the environment sees what the model said and the failure is counted.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Sequence
from importlib import resources

from hera_jax.state import AgentState, normalize_action, normalize_text

FEWSHOT_PACKAGE = "hera_jax.agents.fewshot"

# The action grammar ScienceWorld accepts (from its documentation); shown instead of the thousands of valid strings.
SCIENCEWORLD_ACTION_FORMS = (
    "look around | look at OBJ | look in OBJ | read OBJ | inventory | go to LOCATION | teleport to LOCATION | "
    "open OBJ | close OBJ | pick up OBJ | put down OBJ | move OBJ to OBJ | pour OBJ into OBJ | dunk OBJ into OBJ | "
    "mix OBJ | activate OBJ | deactivate OBJ | use OBJ on OBJ | connect OBJ to OBJ | disconnect OBJ | eat OBJ | "
    "flush OBJ | focus on OBJ | wait | wait1"
)

ENV_INSTRUCTIONS = {
    "scienceworld": (
        "You are an agent in ScienceWorld, a text simulation of science experiments. Complete the task by "
        "issuing one action per turn. Valid action forms: " + SCIENCEWORLD_ACTION_FORMS + ". "
        "Only 'focus on' the object the task names: focusing on a wrong object fails the task. "
        "Reply with an optional 'Thought: ...' line and then exactly one 'Action: ...' line."
    ),
    "textworld_express:twc": (
        "You are an agent in a house. Tidy it up: take each misplaced object and put it where it usually belongs "
        "(dirty dishes in the dishwasher, clothes in the wardrobe, food in the fridge), exploring rooms as needed. "
        "Reply with exactly one 'Action: ...' line."
    ),
    "alfworld": (
        "You are an agent in a household. Complete the task one action at a time: go to a place, open or close "
        "it, take an object from a place, move it to another, and heat, cool, clean, slice or use objects with "
        "the right appliance. Reply with exactly one 'Action: ...' line."
    ),
}
GENERIC_INSTRUCTIONS = (
    "You are an agent in a text environment. Complete the task by issuing one action per turn. "
    "Reply with an optional 'Thought: ...' line and then exactly one 'Action: ...' line."
)


@dataclasses.dataclass(frozen=True)
class FewShotExample:
    task: str
    task_description: str
    steps: tuple[tuple[str, str], ...]  # (action, observation that followed) from a gold path


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    history_k: int = 6  # past (action, observation) pairs shown to the agent
    max_obs_chars: int = 300
    num_fewshot: int = 1
    fewshot_steps: int = 6  # gold-path steps per example


def load_fewshot(env: str) -> tuple[FewShotExample, ...]:
    """Shipped few-shot examples for `env`; none for environments without a file."""
    path = resources.files(FEWSHOT_PACKAGE).joinpath(env.replace(":", "_") + ".json")
    if not path.is_file():
        return ()
    raw = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        FewShotExample(e["task"], e["task_description"], tuple((a, o) for a, o in e["steps"])) for e in raw
    )


def fewshot_from_env(env, task: str, variation: int, max_steps: int) -> FewShotExample:
    """Play the first `max_steps` gold actions of a task variation and keep (action, observation) pairs."""
    first = env.reset(task, variation)
    if not first.gold_path:
        raise ValueError(f"{env.name} gave no gold path for {task}/{variation}")
    steps = []
    for action in first.gold_path[:max_steps]:
        result = env.step(action)
        steps.append((action, normalize_text(result.observation)))
    return FewShotExample(task, normalize_text(first.task_description), tuple(steps))


def _clip(text: str, max_chars: int) -> str:
    text = normalize_text(text)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _episode_lines(description: str, steps: Sequence[tuple[str, str]], max_obs_chars: int) -> list[str]:
    lines = [f"Task: {normalize_text(description)}"]
    for action, observation in steps:
        lines.append(f"Action: {normalize_text(action)}")
        lines.append(f"Observation: {_clip(observation, max_obs_chars)}")
    return lines


def build_prompt(state: AgentState, config: PromptConfig = PromptConfig(),
                 examples: Sequence[FewShotExample] | None = None) -> tuple[str, str]:
    """(system text, user text) for one step; `examples` defaults to the shipped few-shot file of the env.

    Examples of the current task are skipped (the gold path of the very task would be a leak).
    """
    if examples is None:
        examples = load_fewshot(state.env)
    chosen = [e for e in examples if e.task != state.task][: config.num_fewshot]
    system = ENV_INSTRUCTIONS.get(state.env, GENERIC_INSTRUCTIONS)
    parts = []
    for i, example in enumerate(chosen, start=1):
        lines = _episode_lines(example.task_description, example.steps[: config.fewshot_steps], config.max_obs_chars)
        parts.append(f"Example {i}:\n" + "\n".join(lines))
    recent = state.history[-config.history_k:] if config.history_k > 0 else ()
    now = _episode_lines(state.task_description, recent, config.max_obs_chars)
    if len(state.history) > len(recent):
        now.insert(1, f"({len(state.history) - len(recent)} earlier steps not shown)")
    if not recent or normalize_text(recent[-1][1]) != normalize_text(state.observation):
        now.append(f"Observation: {_clip(state.observation, config.max_obs_chars)}")  # else shown just above
    parts.append("Your episode:\n" + "\n".join(now))
    return system, "\n\n".join(parts) + "\n"


def completion_prompt(system: str, user: str) -> str:
    """One text for completion-style backends (base models): the reply continues after 'Action:'."""
    return f"{system}\n\n{user}Action:"


# ---- reply -> action ---------------------------------------------------------------------------------------------

_ACTION_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:>\s*)?action\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_PREFIXES = re.compile(r"^\s*(?:thought|observation|task)\s*:", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(?:the|a|an)\b")
_PUNCT = re.compile(r"[^\w\s]")


@dataclasses.dataclass(frozen=True)
class ParsedAction:
    action: str  # a valid action, or the model's own candidate text when nothing matched
    kind: str  # "exact" | "normalised" | "closest" | "unparseable"
    candidate: str  # what the reply proposed, before mapping

    @property
    def ok(self) -> bool:
        return self.kind != "unparseable"


def extract_candidate(reply: str, continued_action: bool = False) -> str:
    """The proposed action text: the last 'Action:' line, else (a continuation after 'Action:') the first line."""
    matches = _ACTION_LINE.findall(reply)
    if matches:
        candidate = matches[-1]
    elif continued_action:
        candidate = reply.strip().split("\n", 1)[0] if reply.strip() else ""
    else:
        lines = [line for line in reply.splitlines() if line.strip() and not _PREFIXES.match(line)]
        candidate = lines[0] if lines else ""
    return candidate.strip().strip("`'\"").strip()


def canonical(action: str) -> str:
    """Loose form for matching: lower case, no punctuation or articles, single spaces."""
    text = _PUNCT.sub(" ", normalize_action(action))
    return normalize_text(_ARTICLES.sub(" ", text))


def map_to_valid(candidate: str, valid_actions: Sequence[str], cutoff: float = 0.75) -> ParsedAction:
    """Exact, then normalised, then closest (difflib ratio >= cutoff) valid action; else unparseable."""
    if not candidate:
        return ParsedAction("", "unparseable", candidate)
    if candidate in valid_actions:
        return ParsedAction(candidate, "exact", candidate)
    by_normal = {normalize_action(a): a for a in valid_actions}
    if normalize_action(candidate) in by_normal:
        return ParsedAction(by_normal[normalize_action(candidate)], "normalised", candidate)
    by_canonical: dict[str, str] = {}
    for action in valid_actions:
        by_canonical.setdefault(canonical(action), action)
    key = canonical(candidate)
    if key in by_canonical:
        return ParsedAction(by_canonical[key], "normalised", candidate)
    close = difflib.get_close_matches(key, list(by_canonical), n=1, cutoff=cutoff)
    if close:
        return ParsedAction(by_canonical[close[0]], "closest", candidate)
    return ParsedAction(candidate, "unparseable", candidate)


def parse_reply(reply: str, valid_actions: Sequence[str], continued_action: bool = False,
                cutoff: float = 0.75) -> ParsedAction:
    return map_to_valid(extract_candidate(reply, continued_action), valid_actions, cutoff)


# What the environment receives when a reply had no usable text at all (recorded with parse_ok=False).
EMPTY_REPLY_ACTION = "look around"


def action_for_env(parsed: ParsedAction) -> str:
    return parsed.action if parsed.action else EMPTY_REPLY_ACTION
