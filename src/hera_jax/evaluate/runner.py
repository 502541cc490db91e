"""Online evaluation: every (episode, method, knob value) rolled out with the routed hybrid agent by the rollout
engine, appended to one JSONL file of step records as it finishes, so an interrupted evaluation resumes and a
finished one can be replayed.

`EvalPlan` is everything a worker needs to rebuild the agents, routers and baselines (picklable, for Ray workers);
`eval_setup` builds one worker from it. Router points that share a router are scored together in one call per
lockstep; each evaluation worker writes the states it embedded only to the evaluation's own features cache (a
dataset's cache is only read).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hera_jax.agents.base import Agent
from hera_jax.envs.base import Env
from hera_jax.evaluate.baselines import METHOD_MODULES
from hera_jax.evaluate.context import EpisodeSignals, EvalContext, ProbedAgent, SignalEnv
from hera_jax.evaluate.episodes import episode_id
from hera_jax.rollout.engine import EngineConfig, EngineReport, Job, Policy, WorkerSetup, run_jobs
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec
from hera_jax.router.checkpoint import load_router
from hera_jax.router.scorer import RouterScorer, StateEmbedder


@dataclasses.dataclass(frozen=True)
class EvalEpisode:
    eval_split: str  # dev / test / test_unseen
    env_split: str  # the environment's own split the variation comes from
    task: str
    variation: int


@dataclasses.dataclass(frozen=True)
class MethodPoint:
    method: str  # "il", "rl3", "random", "device_only", ...
    param: float | None  # the knob value (threshold, rate, k, ...); None for methods without one
    module: str  # METHOD_MODULES key whose `chooser(param, ctx, method)` decides who acts
    splits: tuple[str, ...]  # eval splits this point runs on

    @property
    def key(self) -> str:
        return f"{self.method}/{self.param}"


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """How an evaluation worker builds its simulators, agents, routers and routing methods (picklable)."""

    make_env: Callable[[], Env]
    make_cloud: Callable[[], Agent]
    make_device: Callable[[], Agent]
    settings: EpisodeSettings
    routers: Mapping[str, tuple[Path, int | None]]  # name -> (checkpoint folder, step or latest)
    features_cache: Path  # the evaluation's own (written in-process)
    read_dirs: tuple[Path, ...] = ()  # datasets' caches (only read)
    seed: int = 0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    points: tuple[MethodPoint, ...] = ()
    task_router: Any = None  # baselines.task_level.TaskRouter without its `embed` (rebound per worker)
    encode: Callable | None = None  # the sentence encoder (default: the routers' encoder)


@dataclasses.dataclass
class EvalWorker:
    context: EvalContext
    embedders: dict[str, StateEmbedder]  # by encoder name

    def flush(self) -> None:
        for embedder in self.embedders.values():
            embedder.flush()


def eval_context(plan: EvalPlan) -> EvalWorker:
    """The agents and routers of one worker, in an `EvalContext` (without routing methods yet)."""
    embedders: dict[str, StateEmbedder] = {}
    routers: dict[str, RouterScorer] = {}
    device = ProbedAgent(plan.make_device())
    for name, (path, step) in plan.routers.items():
        bundle = load_router(path, step)
        spec = bundle.feature_spec
        if spec.encoder not in embedders:
            embedders[spec.encoder] = StateEmbedder(spec, plan.features_cache, plan.read_dirs, plan.encode)
        # a router that reads the device's confidence asks the device first (the device then acts with that answer)
        routers[name] = RouterScorer(bundle, embedders[spec.encoder], device=device)
    context = EvalContext(device=device, cloud=ProbedAgent(plan.make_cloud()),
                          signals=EpisodeSignals(), routers=routers, seed=plan.seed, options=dict(plan.options))
    if plan.task_router is not None:
        context.task_router = dataclasses.replace(plan.task_router, embed=next(iter(embedders.values())).embed)
    return EvalWorker(context, embedders)


def eval_setup(plan: EvalPlan, worker: EvalWorker | None = None, write_cache: bool = False) -> WorkerSetup:
    """One engine worker of the evaluation: a policy per method point (router points scored by their router)."""
    worker = worker or eval_context(plan)
    ctx = worker.context
    policies = {
        point.key: Policy(METHOD_MODULES[point.module].chooser(point.param, ctx, point.method),
                          ctx.routers.get(point.method) if point.module == "router" else None)
        for point in plan.points
    }
    return WorkerSetup(make_env=lambda: SignalEnv(plan.make_env()), cloud=ctx.cloud, device=ctx.device,
                       policies=policies, settings=plan.settings, focus=ctx.signals.focus,
                       close=worker.flush if write_cache else None)


def plan_eval_episodes(
    env: Env,
    seen_tasks: Sequence[str],
    unseen_tasks: Sequence[str],
    per_split: dict[str, int],
    seen_test_split: str = "test",
) -> list[EvalEpisode]:
    """First variations of the environment's dev/test splits: dev and test for seen tasks, test for unseen ones.
    `seen_test_split="dev"` draws the seen-task test episodes from the dev split instead, after the dev episodes
    (e.g. ALFWorld's valid_seen games as a seen-game test): no episode is both dev and test."""
    plan = []
    skip = {"dev": 0, "test": per_split.get("dev", 0) if seen_test_split == "dev" else 0, "test_unseen": 0}
    for eval_split, tasks, env_split in (
        ("dev", seen_tasks, "dev"), ("test", seen_tasks, seen_test_split), ("test_unseen", unseen_tasks, "test")
    ):
        first = skip[eval_split]
        for task in tasks:
            for variation in env.variations(task, env_split)[first: first + per_split.get(eval_split, 0)]:
                plan.append(EvalEpisode(eval_split, env_split, task, variation))
    return sorted(plan, key=lambda e: (e.task, e.eval_split, e.variation))


def eval_jobs(env_name: str, episodes: Sequence[EvalEpisode], points: Sequence[MethodPoint]) -> list[Job]:
    """One job per (episode, point) whose splits include the episode's."""
    return [
        Job(EpisodeSpec(env_name, e.task, e.variation, e.env_split,
                        episode_id(p.method, p.param, e.eval_split, e.task, e.variation)), p.key)
        for e in episodes
        for p in points
        if e.eval_split in p.splits
    ]


def run_online(
    env_name: str,
    episodes: Sequence[EvalEpisode],
    plan: EvalPlan,
    rollouts_path: Path,
    engine: EngineConfig = EngineConfig(),
    show_progress: bool = True,
    worker: EvalWorker | None = None,
) -> EngineReport:
    """Run every (episode, point) of the plan not yet in `rollouts_path`. In-process, `worker` (else a new one) is
    used and its embeddings are written to the evaluation's cache; Ray workers build their own and write none."""
    jobs = eval_jobs(env_name, episodes, plan.points)
    setup = None
    if engine.workers == 1:
        setup = eval_setup(plan, worker, write_cache=True)
    try:
        return run_jobs(jobs, rollouts_path, functools.partial(eval_setup, plan), engine, "evaluate", show_progress,
                        setup=setup)
    finally:
        if setup is not None:
            setup.close()
