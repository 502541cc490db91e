"""Stage 2's episodes through the rollout engine: exploration rollouts, held-out evaluation, baselines."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hera_jax.agents.base import Agent
from hera_jax.envs.base import Env
from hera_jax.features import FeatureSpec
from hera_jax.rl.exploration import exploration_rate
from hera_jax.rl.run import CHECKPOINTS, ROLLOUTS_FILE, EpisodeSetup, RLRun, iter_dir, rollout_visits
from hera_jax.rl.visits import VisitTable
from hera_jax.rollout.engine import Job, Policy, WorkerSetup, run_jobs, states_embedded
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec, always
from hera_jax.rollout.records import read_steps
from hera_jax.rollout.routing import routed
from hera_jax.router.checkpoint import load_router
from hera_jax.router.scorer import RouterScorer, StateEmbedder


def exploration_seed(seed: int, iteration: int, rollout: int) -> int:
    return seed * 1_000_003 + iteration * 1_009 + rollout


# A policy as plain data, so Ray workers can rebuild it: ("always", actor) or ("routed", threshold, epsilon, seed).
PolicyPlan = tuple


def worker_setup(make_env: Callable[[], Env], cloud: Agent, device: Agent, settings: EpisodeSettings,
                 policies: Mapping[str, PolicyPlan], router: tuple[Path, int, FeatureSpec] | None,
                 features_dir: Path, encode: Callable | None, write_cache: bool) -> WorkerSetup:
    """A worker of the RL loop: its simulators, the agents, and the policies, routed ones sharing one scorer of the
    checkpoint `router` = (folder, step, spec). Ray workers only read the run's features cache (`write_cache`)."""
    scorer = None
    if router is not None:
        folder, step, spec = router
        embedder = StateEmbedder(spec, features_dir, encode=encode)
        scorer = RouterScorer(load_router(folder, step=step, expected_spec=spec), embedder)
    built = {}
    for name, plan in policies.items():
        if plan[0] == "always":
            built[name] = Policy(always(plan[1]))
        else:
            _, threshold, epsilon, seed = plan
            built[name] = Policy(routed(scorer, threshold, epsilon=epsilon, seed=seed), scorer)
    return WorkerSetup(make_env, cloud, device, built, settings,
                       close=scorer.embedder.flush if scorer is not None and write_cache else None)


def run_episodes(episodes: EpisodeSetup, jobs: Sequence[Job], policies: Mapping[str, PolicyPlan],
                 router: tuple[Path, int, FeatureSpec] | None, path: Path, label: str
                 ) -> tuple[list[dict[str, Any]], int]:
    """Run the jobs not yet complete in `path` with the engine; return all their rows (in job order) and the number
    of states newly embedded. Routed policies score with checkpoint `router` = (folder, step, spec)."""
    make_setup = functools.partial(worker_setup, episodes.make_env, episodes.cloud, episodes.device,
                                   episodes.settings, policies, router, episodes.features_dir, episodes.encode)
    in_process = episodes.engine.workers == 1
    setup = make_setup(True) if in_process else None
    try:
        report = run_jobs(jobs, path, functools.partial(make_setup, False), episodes.engine, label,
                          episodes.progress, setup=setup, session=episodes.session)
    finally:
        if setup is not None and setup.close is not None:
            setup.close()
    order = {job.spec.episode_id: i for i, job in enumerate(jobs)}
    rows, _ = read_steps(path) if path.exists() else ([], None)
    rows = sorted((r for r in rows if r["episode_id"] in order), key=lambda r: (order[r["episode_id"]], r["step"]))
    return rows, states_embedded(report.accounting)


def checkpoint_of(run: RLRun, step: int) -> tuple[Path, int, FeatureSpec]:
    """The run's router checkpoint `step`, as `run_episodes` takes it."""
    return run.run_dir / CHECKPOINTS, step, run.spec


def episode_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Success rate over episodes and cloud-step ratio over steps (the two numbers the RL stage trades off)."""
    if not rows:
        return {"episodes": 0, "steps": 0, "success_rate": float("nan"), "cloud_step_ratio": float("nan"),
                "steps_per_episode": float("nan"), "cloud_calls_per_episode": float("nan")}
    episodes = {r["episode_id"]: bool(r["success"]) for r in rows}
    cloud_steps = sum(r["actor"] == "cloud" for r in rows)
    return {
        "episodes": len(episodes),
        "steps": len(rows),
        "success_rate": sum(episodes.values()) / len(episodes),
        "cloud_step_ratio": cloud_steps / len(rows),
        "steps_per_episode": len(rows) / len(episodes),
        "cloud_calls_per_episode": cloud_steps / len(episodes),
    }


def evaluate_held_out(run: RLRun, iteration: int) -> dict[str, float]:
    """Greedy router (no exploration) of checkpoint `iteration` on the held-out variations (the engine's workers
    load the checkpoint themselves)."""
    jobs = [Job(EpisodeSpec(run.plan.env_name, t, v, "test", f"eval/iter{iteration}/{t}/{v}"), "greedy")
            for t, v in run.plan.held_out]
    rows, _ = run_episodes(run.episodes, jobs, {"greedy": ("routed", run.config.threshold, 0.0, 0)},
                           checkpoint_of(run, iteration),
                           iter_dir(run.run_dir, iteration) / "eval.jsonl", f"eval iter {iteration}")
    return episode_summary(rows)


def baselines(run: RLRun) -> dict[str, dict[str, float]]:
    out = {}
    for actor in ("cloud", "device"):
        jobs = [Job(EpisodeSpec(run.plan.env_name, t, v, "test", f"eval/{actor}-only/{t}/{v}"), actor)
                for t, v in run.plan.held_out]
        rows, _ = run_episodes(run.episodes, jobs, {actor: ("always", actor)}, None,
                               iter_dir(run.run_dir, 0) / f"{actor}_only.jsonl", f"{actor}-only baseline")
        out[f"{actor}_only"] = episode_summary(rows)
    return out


def rollouts(run: RLRun, iteration: int) -> tuple[list[dict[str, Any]], int]:
    """Exploration rollouts of one iteration with the router of checkpoint `iteration - 1`; returns its rows and
    the number of states newly embedded."""
    config = run.config
    # the constant schedule keeps the exact Python float (exploration_rate computes in float32)
    exploration = config.exploration
    epsilon = exploration.rate if exploration.schedule == "constant" else float(exploration_rate(
        iteration, exploration.rate, exploration.final_rate, exploration.schedule, exploration.decay_iters))
    policies = {f"r{k}": ("routed", config.threshold, epsilon, exploration_seed(config.seed, iteration, k))
                for k in range(config.rollouts_per_task)}
    jobs = [Job(EpisodeSpec(run.plan.env_name, t, v, "train", f"rl/iter{iteration}/{t}/{v}/r{k}"), f"r{k}")
            for t, v in run.plan.train for k in range(config.rollouts_per_task)]
    return run_episodes(run.episodes, jobs, policies, checkpoint_of(run, iteration - 1),
                        iter_dir(run.run_dir, iteration) / ROLLOUTS_FILE, f"rollouts iter {iteration}")


def pooled_iterations(run: RLRun, iteration: int) -> range:
    """The iterations whose rollouts stage 2 pools at `iteration` (`--window`; 0: all so far)."""
    return range(1 if run.config.window <= 0 else max(1, iteration - run.config.window + 1), iteration + 1)


def pooled_visits(run: RLRun, iteration: int) -> VisitTable:
    """The visits stage 2 labels at `iteration`: the pooled iterations' rollouts, each read through its columns
    cache (`iter_<jjj>/rollouts_columns.npz`), so the rollouts of earlier iterations, read again at every later
    one, are validated once."""
    return rollout_visits(run.run_dir, pooled_iterations(run, iteration), run.config.preference.return_kind)
