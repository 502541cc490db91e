"""What a routing method may consult while an episode runs: the agents, the episode's reward stream, scorers.

Choosers only see `(state, state_text, cloud_calls)`; anything else a baseline needs (the device's confidence, the
rewards so far, a trained router's p_cloud) is reached through one `EvalContext`, built once per evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hera_jax.agents.base import Agent, AgentStep
from hera_jax.envs.base import Env, Observation, StepResult
from hera_jax.rollout.routing import PCloudFn
from hera_jax.state import AgentState


class ProbedAgent:
    """An agent whose answer for the state it was last asked about is remembered.

    Baselines that look at an agent's answer before deciding (device confidence, the oracle) and the rollout that
    then lets that agent act get one and the same call, so an LLM is not asked twice nor answers differently.
    """

    def __init__(self, agent: Agent):
        self.agent = agent
        self.name = agent.name
        self.is_stand_in = agent.is_stand_in
        self._last: tuple[AgentState, AgentStep] | None = None

    def act(self, state: AgentState) -> AgentStep:
        if self._last is not None and (self._last[0] is state or self._last[0] == state):
            return self._last[1]
        step = self.agent.act(state)
        self._last = (state, step)
        return step

    def describe(self) -> dict:
        return self.agent.describe()


class SignalEnv:
    """Env wrapper that keeps the current episode's rewards and observations for heuristics that need them."""

    def __init__(self, env: Env):
        self.env = env
        self.name = env.name
        self.version = getattr(env, "version", "")
        self.rewards: list[float] = []
        self.env_steps = 0

    def task_names(self) -> list[str]:
        return self.env.task_names()

    def variations(self, task: str, split: str) -> list[int]:
        return self.env.variations(task, split)

    def reset(self, task: str, variation: int) -> Observation:
        self.rewards = []
        return self.env.reset(task, variation)

    def step(self, action: str) -> StepResult:
        result = self.env.step(action)
        self.rewards.append(result.reward)
        self.env_steps += 1
        return result

    def reward_history(self) -> np.ndarray:
        return np.asarray(self.rewards, np.float32)

    def close(self) -> None:
        self.env.close()


@dataclasses.dataclass
class EvalContext:
    device: ProbedAgent
    cloud: ProbedAgent
    signals: SignalEnv | None = None
    routers: dict[str, PCloudFn] = dataclasses.field(default_factory=dict)  # method name -> p_cloud function
    task_router: Any = None  # baselines.task_level.TaskRouter, when trained
    seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-baseline fixed settings
