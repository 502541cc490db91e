"""One episode of the (hybrid) agent in an environment, as step records.

Who acts at each step is decided by a `Chooser`: cloud-only, device-only, or a router. With `replay="device"` the
device agent is also asked at every step without acting (IL data: the device replayed on cloud states).
`EpisodeProgress` holds one running episode; the engine (`rollout/engine.py`) steps many of them in lockstep.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

from hera_jax.agents.base import AgentStep
from hera_jax.envs.base import Observation, StepResult
from hera_jax.rollout.records import StepRecord
from hera_jax.state import DEFAULT_HISTORY_K, DEFAULT_MAX_OBS_CHARS, AgentState, state_key, state_text  # noqa: F401  (defaults re-exported)


@dataclasses.dataclass(frozen=True)
class Choice:
    actor: str  # "device" | "cloud"
    reason: str
    p_cloud: float | None = None


# (state, state text, cloud calls so far) -> who acts
Chooser = Callable[[AgentState, str, int], Choice]


def always(actor: str) -> Chooser:
    reason = f"{actor}-only"
    return lambda state, text, cloud_calls: Choice(actor, reason)


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    env: str
    task: str
    variation: int
    split: str
    episode_id: str


# The episode step limit every CLI (collect, rl_iter, evaluate) defaults to; the state-text defaults are state.py's.
DEFAULT_MAX_STEPS = 60


@dataclasses.dataclass(frozen=True)
class EpisodeSettings:
    """How an episode runs and how its states are written (the state-text settings must match the router's)."""

    replay: str | None = None  # "device": also ask the device at every step (IL replay); "cloud": ask cloud too
    history_k: int = DEFAULT_HISTORY_K
    max_obs_chars: int = DEFAULT_MAX_OBS_CHARS
    max_steps: int = DEFAULT_MAX_STEPS
    # > 0: an episode also ends after ceil(factor x its gold path's length) steps, where the env gives a gold path.
    # A lost episode otherwise runs on to max_steps, and those steps decide the cloud-step ratio and the run time.
    max_steps_gold_factor: float = 0.0
    max_seconds: float | None = None  # wall-clock limit; the episode ends (unsuccessful) after the step running then


def episode_step_limit(settings: EpisodeSettings, gold_path: tuple[str, ...] | None) -> int:
    """`max_steps`, or ceil(`max_steps_gold_factor` x the gold path's length) when that is set and smaller."""
    if settings.max_steps_gold_factor > 0 and gold_path:
        return min(settings.max_steps, math.ceil(settings.max_steps_gold_factor * len(gold_path)))
    return settings.max_steps


class EpisodeProgress:
    """One running episode: the current state, and the step records so far."""

    def __init__(self, spec: EpisodeSpec, first: Observation, settings: EpisodeSettings):
        self.spec = spec
        self.settings = settings
        self.first = first
        self.observation, self.valid_actions = first.observation, first.valid_actions
        self.expert_action = first.expert_action
        self.history: list[tuple[str, str]] = []
        self.pending: list[dict] = []
        self.cloud_calls = 0
        self.success = False
        self.max_steps = episode_step_limit(settings, first.gold_path)
        self.finished = self.max_steps <= 0
        self.started = time.monotonic()

    def state(self) -> tuple[AgentState, str]:
        state = AgentState(
            task_description=self.first.task_description,
            observation=self.observation,
            valid_actions=self.valid_actions,
            history=tuple(self.history),
            step=len(self.pending),
            gold_path=self.first.gold_path,
            expert_action=self.expert_action,
            env=self.spec.env,
            task=self.spec.task,
            variation=self.spec.variation,
        )
        return state, state_text(state, history_k=self.settings.history_k, max_obs_chars=self.settings.max_obs_chars)

    def record(self, text: str, choice: Choice, asked: dict[str, AgentStep], result: StepResult) -> None:
        action = asked[choice.actor].action
        self.pending.append(
            dict(
                state_text=text,
                state_key=state_key(text),
                actor=choice.actor,
                action=action,
                reward=result.reward,
                score=result.score,
                done=result.done,
                cloud_calls_so_far=self.cloud_calls,
                p_cloud=choice.p_cloud,
                route_reason=choice.reason,
                **_agent_fields("device", asked.get("device")),
                **_agent_fields("cloud", asked.get("cloud")),
            )
        )
        self.cloud_calls += choice.actor == "cloud"
        self.history.append((action, result.observation))
        self.observation, self.valid_actions = result.observation, result.valid_actions
        self.expert_action = result.expert_action
        limit_s = self.settings.max_seconds
        if result.done:
            self.success = result.success
        self.finished = (result.done or len(self.pending) >= self.max_steps
                         or (limit_s is not None and time.monotonic() - self.started > limit_s))

    def records(self) -> list[StepRecord]:
        return [
            StepRecord(
                episode_id=self.spec.episode_id,
                env=self.spec.env,
                task=self.spec.task,
                variation=self.spec.variation,
                split=self.spec.split,
                step=i,
                episode_steps=len(self.pending),
                success=self.success,
                **fields,
            )
            for i, fields in enumerate(self.pending)
        ]


def _agent_fields(role: str, step: AgentStep | None) -> dict:
    if step is None:
        return {f"{role}_action": None}
    fields = {
        f"{role}_action": step.action,
        f"{role}_tokens_in": step.tokens_in,
        f"{role}_tokens_out": step.tokens_out,
        f"{role}_latency_s": step.latency_s,
        f"{role}_parse_ok": step.parse_ok,
    }
    if role == "device":  # what confidence baselines and their evaluation read back
        fields.update(device_logprob=step.logprob, device_entropy=step.entropy, device_p_top=step.p_top,
                      device_margin=step.margin)
    return fields
