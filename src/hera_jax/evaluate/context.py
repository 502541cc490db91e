"""What a routing method may consult while an episode runs: the agents, the episode's reward stream, scorers.

Choosers only see `(state, state_text, cloud_calls)`; anything else a baseline needs (the device's confidence, the
rewards so far, a trained router's p_cloud) is reached through one `EvalContext`, built once per evaluation.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from hera_jax.agents.base import Agent, AgentStep
from hera_jax.envs.base import Env, Observation, StepResult
from hera_jax.rollout.routing import PCloudFn
from hera_jax.state import AgentState


class ProbedAgent:
    """An agent whose answers for the states it was recently asked about are remembered.

    Baselines that look at an agent's answer before deciding (device confidence, the oracle) and the rollout that
    then lets that agent act get one and the same call, so an LLM is not asked twice nor answers differently. The
    engine asks for a whole lockstep's states after all choosers ran, so up to `remember` answers are kept.
    """

    def __init__(self, agent: Agent, remember: int = 256):
        self.agent = agent
        self.name = agent.name
        self.is_stand_in = agent.is_stand_in
        self.stateless = getattr(agent, "stateless", False)  # then the engine may ask from several threads
        self.confidence_signals = getattr(agent, "confidence_signals", frozenset())
        self.remember = remember
        self._answers: OrderedDict[AgentState, AgentStep] = OrderedDict()
        self._lock = threading.Lock()

    def act(self, state: AgentState) -> AgentStep:
        with self._lock:
            answer = self._answers.get(state)
        if answer is None:
            answer = self.agent.act(state)
            with self._lock:
                self._answers[state] = answer
                if len(self._answers) > self.remember:
                    self._answers.popitem(last=False)
        return answer

    def describe(self) -> dict:
        return self.agent.describe()


class SignalEnv:
    """Env wrapper that keeps its current episode's rewards for heuristics that need them (one per engine slot)."""

    def __init__(self, env: Env):
        self.env = env
        self.name = env.name
        self.version = getattr(env, "version", "")
        self.reuse_safe = getattr(env, "reuse_safe", False)  # the engine reuses the simulator only where it may
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


class EpisodeSignals:
    """The reward stream of the episode whose chooser runs now: the engine focuses that episode's `SignalEnv`."""

    def __init__(self):
        self.current: SignalEnv | None = None

    def focus(self, env: SignalEnv) -> None:
        self.current = env

    def reward_history(self) -> np.ndarray:
        return self.current.reward_history() if self.current is not None else np.zeros(0, np.float32)


@dataclasses.dataclass
class EvalContext:
    device: ProbedAgent
    cloud: ProbedAgent
    signals: EpisodeSignals | None = None
    routers: dict[str, PCloudFn] = dataclasses.field(default_factory=dict)  # method name -> p_cloud function
    task_router: Any = None  # baselines.task_level.TaskRouter, when trained
    seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-baseline fixed settings
