"""The agent interface: `act(state) -> AgentStep`, an action plus per-call metadata.

Device and cloud agents, LLM-backed or stand-in, all implement it, so rollouts never care which is which. The
rollout engine asks for a whole lockstep's states at once through `act_batch`: an agent that can batch its model
calls (an LLM server, a local model) defines `act_batch(states)`; every other agent is asked state by state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from hera_jax.errors import HeraError
from hera_jax.state import AgentState


class CloudBudgetExhausted(HeraError, RuntimeError):
    """The next call could exceed an agent's call or token budget, so it was not sent; the rollout falls back to
    the device for routed steps."""


@dataclasses.dataclass(frozen=True)
class AgentStep:
    action: str
    tokens_in: int | None = None  # None where no LLM was called (stand-ins)
    tokens_out: int | None = None
    latency_s: float | None = None
    logprob: float | None = None  # log-probability of the chosen action, where the backend gives it
    entropy: float | None = None
    parse_ok: bool | None = None  # False when a reply could not be mapped onto a valid action
    raw_text: str | None = None
    # scoring backends (which rank every valid action): the softmax probability of the chosen action over the
    # candidates, its margin to the second, and the best few (action, score) pairs
    p_top: float | None = None
    margin: float | None = None
    top_actions: tuple[tuple[str, float], ...] | None = None


@runtime_checkable
class Agent(Protocol):
    name: str  # shown in manifests, tables and plots
    is_stand_in: bool  # True for anything that is not an LLM; results must say so

    def act(self, state: AgentState) -> AgentStep: ...

    def describe(self) -> dict: ...


def act_batch(agent: Agent, states: Sequence[AgentState]) -> list[AgentStep]:
    """The agent's answers for several states (of different episodes): its own `act_batch` where it has one."""
    batched = getattr(agent, "act_batch", None)
    if batched is not None:
        steps = list(batched(list(states)))
        if len(steps) != len(states):
            raise ValueError(f"{agent.name}.act_batch returned {len(steps)} answers for {len(states)} states")
        return steps
    return [agent.act(state) for state in states]
