"""The visits table of RL rollouts: per visited state, who acted, the return from there on and future cloud calls.

Step records (rollout/records.py) become column arrays here; `returns_to_go` and `future_sums` are pure jnp
(segment ops over episodes, no loop over episodes or steps) and `group_ids` maps `state_key`s to dense group ids at
the host edge, ready for `hera_jax.rl.preferences.group_preferences`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RETURN_KINDS = ("success", "score")


def future_sums(episode_index: jax.Array, values: jax.Array) -> jax.Array:
    """float[N]: sum of `values` over the same episode's rows from this row on (this row included).

    Rows must be grouped by episode and ordered by step inside each episode (how records are stored). A segmented
    reverse scan: each row's sum only ever adds rows of its own episode, so the result does not depend on how many
    rows come before it (a cumulative sum over the whole table, differenced, loses float32 digits as it grows) and
    a table of several files gives what each file gives alone, up to the scan's summation order.
    """
    episode_index = jnp.asarray(episode_index, jnp.int32)
    values = jnp.asarray(values, jnp.float32)
    ends_episode = jnp.append(episode_index[1:] != episode_index[:-1], True)

    def add_within_episode(later, earlier):
        # scanning from the end: a row that ends its episode starts a new running sum
        later_end, later_sum = later
        earlier_end, earlier_value = earlier
        return later_end | earlier_end, jnp.where(earlier_end, earlier_value, later_sum + earlier_value)

    _, sums = jax.lax.associative_scan(add_within_episode, (ends_episode, values), reverse=True)
    return sums


def one_step_lookahead(
    episode_index: jax.Array, group: jax.Array, returns: jax.Array, future_calls: jax.Array, num_groups: int
) -> tuple[jax.Array, jax.Array]:
    """Lower-variance estimates of (return, future cloud calls) after a visit's routing choice.

    Monte-Carlo returns carry the luck of everything that happened later (later exploration flips, later device
    mistakes), and with a handful of visits per group that noise swamps the cost of one cloud call: when device and
    cloud would take the same action, both choices reach the same next state, yet their sampled returns differ.
    Here a visit's estimate is its own step's reward (and cloud call) plus the mean over all visits of the next
    state's group, so choices that lead to the same state get the same continuation and the cost decides. The last
    step of an episode keeps its actual value. Rows must be grouped by episode, in step order.
    """
    episode_index = jnp.asarray(episode_index, jnp.int32)
    group = jnp.asarray(group, jnp.int32)
    returns = jnp.asarray(returns, jnp.float32)
    future_calls = jnp.asarray(future_calls, jnp.float32)
    is_last = jnp.append(episode_index[1:] != episode_index[:-1], True)
    next_group = jnp.append(group[1:], 0)
    count = jnp.maximum(jax.ops.segment_sum(jnp.ones_like(returns), group, num_groups), 1.0)
    mean_return = jax.ops.segment_sum(returns, group, num_groups) / count
    mean_calls = jax.ops.segment_sum(future_calls, group, num_groups) / count
    # x_t - x_{t+1} is this step's own reward (cloud call); the group mean replaces the sampled rest.
    return_next = jnp.append(returns[1:], 0.0)
    calls_next = jnp.append(future_calls[1:], 0.0)
    lookahead_return = jnp.where(is_last, returns, returns - return_next + mean_return[next_group])
    lookahead_calls = jnp.where(is_last, future_calls, future_calls - calls_next + mean_calls[next_group])
    return lookahead_return, lookahead_calls


def step_rewards(kind: str, is_last: np.ndarray, success: np.ndarray, score: np.ndarray,
                 score_before: np.ndarray) -> np.ndarray:
    """Per-step reward whose return-to-go is the configured episode return from that step on.

    "success": 1 at the last step of a successful episode (so every step's return is the episode's success).
    "score": progress in the environment's score, clipped at 0 and scaled to [0, 1] (ScienceWorld: 100 = done,
    -100 = failed), so the return from a step is the progress still made after it.
    """
    if kind == "success":
        return (is_last & success).astype(np.float32)
    if kind == "score":
        return ((np.maximum(score, 0) - np.maximum(score_before, 0)) / 100.0).astype(np.float32)
    raise ValueError(f"return kind must be one of {RETURN_KINDS}, got {kind!r}")


@dataclasses.dataclass(frozen=True)
class VisitTable:
    """Column arrays over every visited state of a set of complete episodes (grouped by episode, by step)."""

    episode_index: np.ndarray  # int32[N] dense episode id
    state_key: list[str]
    state_text: list[str]
    step: np.ndarray  # int32[N]
    chose_cloud: np.ndarray  # bool[N]
    explored: np.ndarray  # bool[N] the routing choice was an exploration flip
    returns: np.ndarray  # float32[N] return from this step on
    future_cloud_calls: np.ndarray  # float32[N] cloud calls from this step to the end, this one included
    episode_success: np.ndarray  # bool[E]

    def __len__(self) -> int:
        return len(self.step)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_success)


def visit_table(rows: Sequence[dict[str, Any]], return_kind: str) -> VisitTable:
    """Build the table from step-record dicts (as `read_steps` returns them: complete episodes, step order)."""
    episode_ids = [r["episode_id"] for r in rows]
    _, first_pos, episode_index = np.unique(np.asarray(episode_ids, dtype=str), return_index=True,
                                            return_inverse=True)
    # Dense ids in order of first appearance keep rows grouped and ordered as stored.
    order = np.argsort(first_pos)
    episode_index = np.argsort(order)[episode_index.reshape(-1)].astype(np.int32)
    return _visit_table(
        episode_index, len(first_pos), return_kind,
        step=np.asarray([r["step"] for r in rows], np.int32),
        episode_steps=np.asarray([r["episode_steps"] for r in rows], np.int32),
        success=np.asarray([bool(r["success"]) for r in rows], bool),
        score=np.asarray([r["score"] for r in rows], np.float32),
        chose_cloud=np.asarray([r["actor"] == "cloud" for r in rows], bool),
        explored=np.asarray([r.get("route_reason") == "explore" for r in rows], bool),
        state_key=[r["state_key"] for r in rows], state_text=[r["state_text"] for r in rows])


def visit_table_from_columns(columns: dict[str, Any], return_kind: str) -> VisitTable:
    """The same table from a records file's columns (`hera_jax.columns`): no row is parsed again, and the state
    texts are the distinct states' own strings, shared by every visit of a state."""
    keys, texts = columns["distinct_keys"], columns["distinct_texts"]
    state_index = columns["state_index"].tolist()
    return _visit_table(
        # episode codes are dense in order of first appearance, the same numbering as `visit_table`'s
        np.asarray(columns["episode_id_codes"], np.int32), len(columns["episode_id_vocab"]), return_kind,
        step=columns["step"], episode_steps=columns["episode_steps"], success=columns["success"].astype(bool),
        score=columns["score"], chose_cloud=columns["cloud_acted"].astype(bool),
        explored=columns["explored"].astype(bool),
        state_key=[keys[i] for i in state_index], state_text=[texts[i] for i in state_index])


def _visit_table(episode_index: np.ndarray, num_episodes: int, return_kind: str, *, step: np.ndarray,
                 episode_steps: np.ndarray, success: np.ndarray, score: np.ndarray, chose_cloud: np.ndarray,
                 explored: np.ndarray, state_key: list[str], state_text: list[str]) -> VisitTable:
    if len(step) == 0:
        empty_f, empty_i = np.zeros(0, np.float32), np.zeros(0, np.int32)
        return VisitTable(empty_i, [], [], empty_i, np.zeros(0, bool), np.zeros(0, bool), empty_f, empty_f,
                          np.zeros(0, bool))
    step = np.asarray(step, np.int32)
    score = np.asarray(score, np.float32)
    is_last = step == np.asarray(episode_steps) - 1
    score_before = np.where(step > 0, np.roll(score, 1), 0.0).astype(np.float32)
    rewards = step_rewards(return_kind, is_last, success, score, score_before)
    returns = np.asarray(future_sums(episode_index, rewards))
    future_calls = np.asarray(future_sums(episode_index, chose_cloud.astype(np.float32)))
    episode_success = np.zeros(num_episodes, bool)
    episode_success[episode_index] = success
    return VisitTable(episode_index=episode_index, state_key=state_key, state_text=state_text, step=step,
                      chose_cloud=chose_cloud, explored=explored, returns=returns, future_cloud_calls=future_calls,
                      episode_success=episode_success)


def concat_visit_tables(tables: Sequence[VisitTable]) -> VisitTable:
    """One table of several records files' visits (e.g. a window of RL iterations), episodes numbered on."""
    if len(tables) == 1:
        return tables[0]
    offsets = np.cumsum([0] + [t.num_episodes for t in tables[:-1]])
    return VisitTable(
        episode_index=np.concatenate([t.episode_index + o for t, o in zip(tables, offsets)]).astype(np.int32),
        state_key=[k for t in tables for k in t.state_key], state_text=[x for t in tables for x in t.state_text],
        **{name: np.concatenate([getattr(t, name) for t in tables])
           for name in ("step", "chose_cloud", "explored", "returns", "future_cloud_calls", "episode_success")})


def group_ids(keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Dense group id per key (identical states share one) and the key of each group."""
    unique, inverse = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    return inverse.astype(np.int32), unique.tolist()


def heldout_groups(keys: Sequence[str], percent: int) -> np.ndarray:
    """bool[G]: a fixed share (`percent` %) of state groups, chosen by the state key (a hex digest), so reruns and
    later iterations hold out the same states."""
    if not 0 < percent < 100:
        raise ValueError(f"held-out groups percent must be between 1 and 99, got {percent}")
    return np.asarray([int(k[:12], 16) % 100 < percent for k in keys], bool)


def groups_of_keys(keys: Sequence[str], group_keys: Sequence[str]) -> np.ndarray:
    """int32 group of each key among `group_keys` (e.g. IL training states among the visited groups); -1 = none."""
    group_of_key = {k: i for i, k in enumerate(group_keys)}
    return np.asarray([group_of_key.get(k, -1) for k in keys], np.int32).reshape(-1)


class GroupedVisits(NamedTuple):
    """Visits of RL rollouts grouped by identical state, with the return estimates the group labels compare."""

    visits: VisitTable
    group: np.ndarray  # int32[N] dense group of each visit
    keys: list[str]  # state_key of each group
    returns: np.ndarray  # float32[N] return estimate after the visit's routing choice
    future_calls: np.ndarray  # float32[N] cloud calls from the visit on (estimate, this one included)


def grouped_visits(rows: Sequence[dict[str, Any]] | VisitTable, return_kind: str, return_estimate: str
                   ) -> GroupedVisits:
    """Step records (or their `VisitTable`, already built with `return_kind`) -> visits, groups of identical states
    and per-visit estimates: 'monte-carlo' (what followed in the visit's own episode, any value but 'lookahead') or
    'lookahead' (`one_step_lookahead`)."""
    visits = rows if isinstance(rows, VisitTable) else visit_table(rows, return_kind)
    gid, keys = group_ids(visits.state_key)
    returns, future_calls = visits.returns, visits.future_cloud_calls
    if return_estimate == "lookahead":
        returns, future_calls = jax.jit(one_step_lookahead, static_argnames="num_groups")(
            visits.episode_index, gid, returns, future_calls, num_groups=len(keys))
    return GroupedVisits(visits, gid, keys, np.asarray(returns, np.float32), np.asarray(future_calls, np.float32))
