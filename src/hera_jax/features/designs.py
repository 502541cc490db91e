"""Text designs: which texts are embedded for one state, and how their embeddings become one router input.

- "joint": the whole state text is one embedding (the encoder truncates it at 256 tokens, so on long states the
  current observation, its last line, is cut off).
- "obs_first": one embedding of the state text reordered as current observation, task, then history newest first,
  so truncation removes the oldest history first and the current observation is always read.
- "segments": the task, the current observation and each (action, observation) history item are embedded
  separately (each far below the token limit) and combined as [task, observation, mean of history items]. The
  segments repeat across steps and episodes, so each is embedded once and cached by its own key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from hera_jax.state import StateTextParts, parse_state_text, state_key

TextDesign = Literal["joint", "obs_first", "segments"]
TEXT_DESIGNS: tuple[str, ...] = get_args(TextDesign)
# embedding slots in the router input: segments concatenates task, current observation and the history mean
EMBEDDING_SLOTS = {"joint": 1, "obs_first": 1, "segments": 3}


def obs_first_text(parts: StateTextParts) -> str:
    lines = [f"Now: {parts.observation}", f"Task: {parts.task}"]
    for action, observation in reversed(parts.history):
        lines += [f"> {action}", observation]
    return "\n".join(lines)


def history_item_text(action: str, observation: str) -> str:
    return f"> {action}\n{observation}"


@dataclasses.dataclass(frozen=True)
class EmbeddingPlan:
    """The distinct texts to embed for N states and where each state's embeddings come from.

    `texts[i]` has cache key `keys[i]`. Slot columns index into `texts`: `slots` is int[N, S] for the fixed slots
    (joint / obs_first: the state text; segments: task, observation); `history` / `history_owner` list the
    history items of every state (segments only) for a per-state mean.
    """

    keys: list[str]
    texts: list[str]
    slots: np.ndarray
    history: np.ndarray
    history_owner: np.ndarray


def _index(wanted_keys: Sequence[str], wanted_texts: Sequence[str]) -> tuple[list[str], list[str], np.ndarray]:
    position: dict[str, int] = {}
    keys, texts = [], []
    for k, t in zip(wanted_keys, wanted_texts):
        if k not in position:
            position[k] = len(keys)
            keys.append(k)
            texts.append(t)
    return keys, texts, np.asarray([position[k] for k in wanted_keys], np.int64)


def embedding_plan(state_texts: Sequence[str], design: str, state_keys: Sequence[str] | None = None) -> EmbeddingPlan:
    """What to embed for `state_texts` under `design`; `state_keys` (joint only) keep the dataset's own keys."""
    if design not in TEXT_DESIGNS:
        raise ValueError(f"unknown text design {design!r}; choose one of {TEXT_DESIGNS}")
    empty = np.zeros(0, np.int64)
    if design == "joint":
        keys = list(state_keys) if state_keys is not None else [state_key(t) for t in state_texts]
        keys, texts, index = _index(keys, state_texts)
        return EmbeddingPlan(keys, texts, index[:, None], empty, empty)
    parts = [parse_state_text(t) for t in state_texts]
    if design == "obs_first":
        reordered = [obs_first_text(p) for p in parts]
        keys, texts, index = _index([state_key(t) for t in reordered], reordered)
        return EmbeddingPlan(keys, texts, index[:, None], empty, empty)
    history_texts = [history_item_text(a, o) for p in parts for a, o in p.history]
    owner = np.repeat(np.arange(len(parts)), [len(p.history) for p in parts]).astype(np.int64)
    wanted = [p.task for p in parts] + [p.observation for p in parts] + history_texts
    keys, texts, index = _index([state_key(t) for t in wanted], wanted)
    n = len(parts)
    return EmbeddingPlan(keys, texts, np.stack([index[:n], index[n:2 * n]], axis=1), index[2 * n:], owner)


def combine(plan: EmbeddingPlan, embeddings: np.ndarray, design: str) -> np.ndarray:
    """float32[N, slots * D] router embedding input from the embeddings of `plan.texts` (float32[U, D])."""
    n, dim = plan.slots.shape[0], embeddings.shape[1]
    fixed = embeddings[plan.slots].reshape(n, -1)
    if design != "segments":
        return fixed
    sums = np.zeros((n, dim), np.float32)
    np.add.at(sums, plan.history_owner, embeddings[plan.history])
    counts = np.bincount(plan.history_owner, minlength=n).astype(np.float32)
    # a state without history gets a zero history slot (no history item to average)
    mean = sums / np.maximum(counts, 1.0)[:, None]
    return np.concatenate([fixed, mean], axis=1).astype(np.float32)


def repeat_rate(state_texts: Sequence[str], design: str) -> dict[str, float | int]:
    """Embedding cache hit rate of embedding `state_texts` in order with an initially empty cache: the share of
    the embeddings the router inputs need that an earlier state already needed (1 - distinct / needed)."""
    plan = embedding_plan(state_texts, design)
    needed = plan.slots.size + plan.history.size
    return {"needed": int(needed), "distinct": len(plan.keys), "hit_rate": 1.0 - len(plan.keys) / max(needed, 1)}
