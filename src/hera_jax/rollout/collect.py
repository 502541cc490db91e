"""Collect trajectories into a dataset folder, append-only and resumable.

A plan is a list of `EpisodeSpec`s with deterministic ids; a rerun skips ids already complete on disk, so a killed
collection resumes where it stopped without duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hera_jax.agents.base import Agent
from hera_jax.envs.base import Env
from hera_jax.rollout.engine import EngineConfig, Job, WorkerSetup, run_jobs
from hera_jax.rollout.episode import EpisodeSpec
from hera_jax.rollout.records import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    STEPS_FILE,
    stored_steps_file,
    DatasetError,
    now_iso,
    read_manifest,
    read_steps,
    summarize,
    write_json_atomic,
)
from hera_jax.runs import flat_settings, hide_url_secrets


def without_process_ids(accounting: dict[str, Any]) -> dict[str, Any]:
    """The engine's accounting as a manifest keeps it: without its Ray workers' process ids, which mean nothing once
    the run is over."""
    if "workers" not in accounting:
        return accounting
    return {**accounting, "workers": [{k: v for k, v in w.items() if k != "process"} for w in accounting["workers"]]}


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


COLLECT_POLICY = "collect"  # the one policy of a collection (who acts: --mode)


def check_or_write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse to mix collections: an existing dataset must have been collected with the same settings."""
    if (out / MANIFEST_FILE).exists():
        old = hide_url_secrets(read_manifest(out))  # as it would be stored now (older manifests hold raw URLs)
        # name each differing field ("agents.device.model_sha256"), not two whole settings dicts
        on_disk = flat_settings({k: old.get(k) for k in ("env", "agents", "settings")})
        now = flat_settings({k: manifest[k] for k in ("env", "agents", "settings")})
        diffs = [f"{k}: on disk {on_disk.get(k)!r}, now {now.get(k)!r}"
                 for k in dict.fromkeys([*on_disk, *now]) if on_disk.get(k) != now.get(k)]
        if diffs:
            raise DatasetError(
                f"{out / MANIFEST_FILE}: this dataset was collected with other settings ("
                + "; ".join(diffs)
                + "). Choose a new --out folder to collect with these settings."
            )
        return
    steps_path = stored_steps_file(out / STEPS_FILE)
    if steps_path is not None and steps_path.stat().st_size > 0:  # without its manifest nothing says how it was made
        raise DatasetError(
            f"{steps_path}: has episodes but {out / MANIFEST_FILE} is missing, so nothing says which settings "
            "collected them; restore the manifest, or collect into a new --out folder (nothing was appended)"
        )
    write_json_atomic(out / MANIFEST_FILE, manifest)


def collect(
    specs: Sequence[EpisodeSpec],
    make_setup: Callable[[], WorkerSetup],
    out: Path,
    manifest: dict[str, Any],
    engine: EngineConfig = EngineConfig(),
    show_progress: bool = True,
    setup: WorkerSetup | None = None,
) -> dict[str, Any]:
    """Run every spec not yet on disk with the setup's single policy ("collect"), appending each finished episode;
    returns the dataset summary. `make_setup` builds a worker's simulators and agents (in every Ray worker)."""
    manifest = {**manifest, "format_version": FORMAT_VERSION}
    check_or_write_manifest(out, manifest)
    steps_path = out / STEPS_FILE
    report = run_jobs([Job(spec, COLLECT_POLICY) for spec in specs], steps_path, make_setup, engine, "collect",
                      show_progress, setup=setup)
    new_episodes = report.episodes_run + report.episodes_recovered  # written by this run
    rows, problems = read_steps(steps_path)
    summary = {**summarize(rows), **llm_summary(rows)}
    # the command of the run that last added episodes: datasets grow by a rerun with larger counts
    final = {**read_manifest(out), "summary": summary, "updated": now_iso(), "load_problems": problems.problems,
             "last_run_accounting": without_process_ids(report.accounting),
             **({"command": manifest["command"]} if new_episodes and "command" in manifest else {})}
    write_json_atomic(out / MANIFEST_FILE, final)
    return {**summary, "new_episodes": new_episodes, "skipped_existing": report.episodes_resumed}


def agents_manifest(cloud: Agent, device: Agent) -> dict[str, Any]:
    return {"cloud": cloud.describe(), "device": device.describe()}




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
