"""Online evaluation: every (episode, method, knob value) rolled out with the routed hybrid agent, appended to one
JSONL file of step records as it finishes, so an interrupted evaluation resumes and a finished one can be replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from hera_jax.evaluate.context import EvalContext, SignalEnv
from hera_jax.evaluate.episodes import episode_id
from hera_jax.rollout.episode import Chooser, EpisodeSpec, run_episode
from hera_jax.rollout.records import append_episode, completed_episode_ids


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
    chooser: Chooser
    splits: tuple[str, ...]  # eval splits this point runs on


def plan_eval_episodes(
    env: SignalEnv,
    seen_tasks: Sequence[str],
    unseen_tasks: Sequence[str],
    per_split: dict[str, int],
) -> list[EvalEpisode]:
    """First variations of the environment's dev/test splits: dev and test for seen tasks, test for unseen ones."""
    plan = []
    for eval_split, tasks, env_split in (
        ("dev", seen_tasks, "dev"), ("test", seen_tasks, "test"), ("test_unseen", unseen_tasks, "test")
    ):
        for task in tasks:
            for variation in env.variations(task, env_split)[: per_split.get(eval_split, 0)]:
                plan.append(EvalEpisode(eval_split, env_split, task, variation))
    # group by (task, variation) so the simulator loads each variation once for all methods
    return sorted(plan, key=lambda e: (e.task, e.eval_split, e.variation))


def run_online(
    env: SignalEnv,
    plan: Sequence[EvalEpisode],
    points: Sequence[MethodPoint],
    ctx: EvalContext,
    rollouts_path: Path,
    episode_kwargs: dict,
    show_progress: bool = True,
    on_episode=None,
) -> dict:
    """Run every (episode, point) not yet in `rollouts_path`; returns counts of what ran and what was skipped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    done = completed_episode_ids(rollouts_path)
    jobs = [
        (episode, point, episode_id(point.method, point.param, episode.eval_split, episode.task, episode.variation))
        for episode in plan
        for point in points
        if episode.eval_split in point.splits
    ]
    todo = [job for job in jobs if job[2] not in done]
    ran_steps = 0
    with Progress(
        TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not show_progress, console=Console(stderr=True),
    ) as progress:
        bar = progress.add_task("episodes", total=len(jobs), completed=len(jobs) - len(todo), stats="")
        for episode, point, eid in todo:
            spec = EpisodeSpec(env.name, episode.task, episode.variation, episode.env_split, eid)
            records = run_episode(env, spec, ctx.cloud, ctx.device, point.chooser, **episode_kwargs)
            append_episode(rollouts_path, records)
            ran_steps += len(records)
            if on_episode is not None:
                on_episode()
            progress.update(bar, advance=1, stats=f"{episode.task[:24]:<24} {point.method:<12} steps {ran_steps}")
    return {"episodes_run": len(todo), "episodes_resumed": len(jobs) - len(todo), "steps_run": ran_steps}
