"""Collect trajectories into a dataset folder, append-only and resumable.

A plan is a list of `EpisodeSpec`s with deterministic ids; a rerun skips ids already complete on disk, so a killed
collection resumes where it stopped without duplicates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hera_jax.agents.base import Agent
from hera_jax.envs.base import Env
from hera_jax.rollout.episode import Chooser, EpisodeSpec
from hera_jax.rollout.runner import EpisodeWorker, InProcessRunner, RolloutRecipe
from hera_jax.rollout.records import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    STEPS_FILE,
    DatasetError,
    append_episode,
    completed_episode_ids,
    now_iso,
    read_manifest,
    read_steps,
    summarize,
    write_json_atomic,
)


def plan_episodes(
    env: Env, tasks: Sequence[str], per_split: dict[str, int], mode: str, seed: int
) -> list[EpisodeSpec]:
    """The first `per_split[split]` variations of each task in each split of the environment."""
    specs = []
    for task in tasks:
        for split, count in per_split.items():
            for variation in env.variations(task, split)[:count]:
                specs.append(
                    EpisodeSpec(
                        env=env.name,
                        task=task,
                        variation=variation,
                        split=split,
                        episode_id=f"{env.name}/{task}/{variation}/{mode}/seed{seed}",
                    )
                )
    return specs


def check_or_write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse to mix collections: an existing dataset must have been collected with the same settings."""
    if (out / MANIFEST_FILE).exists():
        old = read_manifest(out)
        diffs = [
            f"{k}: on disk {old.get(k)!r}, now {manifest[k]!r}"
            for k in ("env", "agents", "settings")
            if old.get(k) != manifest[k]
        ]
        if diffs:
            raise DatasetError(
                f"{out / MANIFEST_FILE}: this dataset was collected with other settings ("
                + "; ".join(diffs)
                + "). Choose a new --out folder to collect with these settings."
            )
        return
    steps_path = out / STEPS_FILE
    if steps_path.exists() and steps_path.stat().st_size > 0:  # without its manifest nothing says how it was made
        raise DatasetError(
            f"{steps_path}: has episodes but {out / MANIFEST_FILE} is missing, so nothing says which settings "
            "collected them; restore the manifest, or collect into a new --out folder (nothing was appended)"
        )
    write_json_atomic(out / MANIFEST_FILE, manifest)


def collect(
    env: Env,
    specs: Sequence[EpisodeSpec],
    cloud: Agent,
    device: Agent,
    choose: Chooser,
    out: Path,
    manifest: dict[str, Any],
    episode_kwargs: dict[str, Any],
    show_progress: bool = True,
    runner: Any = None,
    recipe: RolloutRecipe | None = None,
) -> dict[str, Any]:
    """Run every spec not yet on disk, appending each finished episode; returns the dataset summary.

    `runner` (e.g. a `RayRunner`) runs the episodes; by default they run here on `env` with `cloud`/`device`, and a
    crashed or hung simulator is rebuilt from `recipe.make_env` when a recipe is given (else the error propagates).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    manifest = {**manifest, "format_version": FORMAT_VERSION}
    check_or_write_manifest(out, manifest)
    steps_path = out / STEPS_FILE
    done_ids = completed_episode_ids(steps_path)
    todo = [s for s in specs if s.episode_id not in done_ids]
    if runner is None:
        recipe = recipe or RolloutRecipe(make_env=_cannot_restart(env), make_cloud=lambda: cloud,
                                         make_device=lambda: device, choose=choose, max_episode_retries=0,
                                         fresh_env_per_episode=False)
        recipe = dataclasses.replace(recipe, choose=choose, episode_kwargs=episode_kwargs)
        runner = InProcessRunner(EpisodeWorker(recipe, env=env, cloud=cloud, device=device))
    successes = cloud_steps = total_steps = tokens = 0
    with Progress(
        TextColumn("[bold]collect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        console=Console(stderr=True),
    ) as progress:
        bar = progress.add_task("episodes", total=len(specs), completed=len(specs) - len(todo), stats="")
        for i, (spec, records) in enumerate(runner.run(todo), start=1):
            append_episode(steps_path, records)
            successes += records[-1].success
            cloud_steps += sum(r.actor == "cloud" for r in records)
            total_steps += len(records)
            tokens += sum(_tokens(r) for r in records)
            progress.update(
                bar,
                advance=1,
                stats=f"success {successes / i:.0%}  cloud-steps {cloud_steps / max(total_steps, 1):.0%}"
                      f"  tokens {tokens:,}",
            )
    rows, report = read_steps(steps_path)
    summary = {**summarize(rows), **llm_summary(rows)}
    final = {**read_manifest(out), "summary": summary, "updated": now_iso(), "load_problems": report.problems,
             "last_run_accounting": runner.accounting()}
    write_json_atomic(out / MANIFEST_FILE, final)
    return {**summary, "new_episodes": len(todo), "skipped_existing": len(specs) - len(todo)}


def agents_manifest(cloud: Agent, device: Agent) -> dict[str, Any]:
    return {"cloud": cloud.describe(), "device": device.describe()}


def _tokens(record: Any) -> int:
    return sum(getattr(record, f"{role}_tokens_{io}") or 0 for role in ("device", "cloud") for io in ("in", "out"))


def _cannot_restart(env: Env):
    def fail() -> Env:
        raise RuntimeError(f"{env.name} crashed and collect() was given no recipe to rebuild it")

    return fail


def llm_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per role: steps answered, unparseable replies, tokens, mean latency; empty for stand-ins (no LLM calls)."""
    out: dict[str, Any] = {}
    for role in ("device", "cloud"):
        answered = [r for r in rows if r.get(f"{role}_parse_ok") is not None]
        if not answered:
            continue
        latencies = [r[f"{role}_latency_s"] for r in answered if r.get(f"{role}_latency_s") is not None]
        out[role] = {
            "llm_steps": len(answered),
            "unparseable_replies": sum(not r[f"{role}_parse_ok"] for r in answered),
            "tokens_in": sum(r.get(f"{role}_tokens_in") or 0 for r in answered),
            "tokens_out": sum(r.get(f"{role}_tokens_out") or 0 for r in answered),
            "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
        }
    return {"llm": out} if out else {}
