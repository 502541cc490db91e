"""An RL run folder and what a run works with (stage 2's file edge).

Run folder layout (everything a resumed run needs is on disk; a finished iteration is never redone):

    config.json                 the settings; a resumed run must match them (except the fields it declares)
    features/                   copy of the dataset's embedding cache, plus the states first seen in rollouts
    checkpoints/<i>/            orbax router after iteration i (0 = the IL start)
    iter_000/metrics.json       held-out evaluation of the IL router (+ cloud-only / device-only baselines)
    iter_<i>/rollouts.jsonl     exploration rollouts of iteration i (append-only, resumable per episode)
    iter_<i>/rollouts_columns.npz  those rollouts as columns (hera_jax.columns), keyed by the file's digest
    iter_<i>/eval.jsonl         greedy held-out evaluation episodes of the router after iteration i
    iter_<i>/metrics.json       written last: marks iteration i finished
    summary.json                all finished iterations' metrics
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hera_jax.agents.base import Agent
from hera_jax.dataset import StepTable, load_il_table
from hera_jax.envs.base import Env
from hera_jax.errors import HeraError
from hera_jax.features import FeatureCacheError, FeatureSpec, featurize_indexed
from hera_jax.features.cache import cache_path, check_cache_folder, round_like_cache
from hera_jax.columns import load_step_columns
from hera_jax.rl.config import RLConfig, stored_preference
from hera_jax.rl.visits import VisitTable, concat_visit_tables, visit_table_from_columns
from hera_jax.rollout.engine import EngineConfig, EngineSession, single_env
from hera_jax.rollout.episode import DEFAULT_HISTORY_K, DEFAULT_MAX_OBS_CHARS, EpisodeSettings
from hera_jax.files import read_json_object, write_json_atomic
from hera_jax.rollout.records import existing_steps_file
from hera_jax.router.checkpoint import RouterBundle, load_router
from hera_jax.router.scorer import RouterScorer, StateEmbedder
from hera_jax.runs import RunFolderError, check_resume, config_json


CHECKPOINTS = "checkpoints"
ROLLOUTS_FILE = "rollouts.jsonl"
ROLLOUT_COLUMNS_FILE = "rollouts_columns.npz"


FEATURES = "features"


def iter_dir(run_dir: Path, iteration: int) -> Path:
    return run_dir / f"iter_{iteration:03d}"


def finished_iterations(run_dir: Path) -> int:
    """Number of consecutive finished iterations after the start (-1: not even the IL start is finished)."""
    last = -1
    while (iter_dir(run_dir, last + 1) / "metrics.json").exists():
        last += 1
    return last


def agents_title(cloud: Agent, device: Agent) -> str:
    from hera_jax.dataset import manifest_agents_title

    return manifest_agents_title({"cloud": cloud.describe(), "device": device.describe()}).removeprefix("agents: ")


def start_features(config: RLConfig) -> FeatureSpec:
    """The router inputs of --init-checkpoint: the run uses them, and records them as its --features. A --features.*
    flag that asks for other inputs is refused (it would be ignored)."""
    spec = load_router(config.init_checkpoint).feature_spec
    if config.features != FeatureSpec() and config.features != spec:
        differ = [f"--features.{f.name.replace('_', '-')} {getattr(config.features, f.name)!r} (checkpoint: "
                  f"{getattr(spec, f.name)!r})" for f in dataclasses.fields(spec)
                  if getattr(config.features, f.name) != getattr(spec, f.name)]
        raise HeraError(f"{config.init_checkpoint}: the router starts from this checkpoint and keeps its inputs, but "
                        f"{'; '.join(differ)}; drop those flags (the run uses the checkpoint's) or pass another "
                        "--init-checkpoint")
    return spec


@dataclasses.dataclass(frozen=True)
class ILData:
    """The IL dataset a run starts from: its step table, the features of every table row (rounded like the cache;
    a jax.Array on JAX's default device) and the router inputs they were built with."""

    table: StepTable
    features: Any
    spec: FeatureSpec

    @classmethod
    def featurize(cls, table: StepTable, spec: FeatureSpec, features_dir: Path, encode: Callable | None = None
                  ) -> tuple[ILData, int]:
        """The table with its features (each distinct state looked up, or embedded into `features_dir`, once; the
        rows gathered and rounded on the device) and the number of states newly embedded."""
        features, num_new = featurize_indexed(table.distinct_keys, table.distinct_texts, table.state_index,
                                              table.step, spec, features_dir, encode=encode)
        return cls(table, round_like_cache(features), spec), num_new


@dataclasses.dataclass(frozen=True)
class VariationPlan:
    """Which episodes the run plays: the tasks, and the (task, variation) pairs of the rollouts and of the held-out
    evaluation."""

    env_name: str
    tasks: list[str]
    train: list[tuple[str, int]]
    held_out: list[tuple[str, int]]


@dataclasses.dataclass(frozen=True)
class EpisodeSetup:
    """How the run plays episodes: one simulator per engine slot from `make_env` (Ray workers call it too: keep it
    picklable), the two agents, the episode settings, the engine and, while `run_rl` runs, its Ray session. Routed
    policies embed their states into `features_dir` with `encode`."""

    make_env: Callable[[], Env]
    cloud: Agent
    device: Agent
    settings: EpisodeSettings
    engine: EngineConfig
    features_dir: Path
    encode: Callable | None
    progress: bool
    session: EngineSession | None = None


@dataclasses.dataclass(frozen=True)
class RLRun:
    """Everything one RL run works with; built once by `open_run`, used by every iteration."""

    config: RLConfig
    run_dir: Path
    il: ILData
    plan: VariationPlan
    episodes: EpisodeSetup
    console: Any

    @property
    def spec(self) -> FeatureSpec:
        return self.il.spec

    def scorer(self, bundle: RouterBundle) -> RouterScorer:
        embedder = StateEmbedder(self.spec, self.episodes.features_dir, encode=self.episodes.encode)
        return RouterScorer(bundle, embedder)

    def meta(self) -> dict[str, Any]:
        cloud, device = self.episodes.cloud, self.episodes.device
        return {
            "agents": {"cloud": cloud.describe(), "device": device.describe()},
            "agents_title": agents_title(cloud, device),
            "agents_are_stand_ins": bool(cloud.is_stand_in or device.is_stand_in),
        }


def open_run(
    config: RLConfig,
    run_dir: Path,
    env: Env,
    cloud: Agent,
    device: Agent,
    dataset: Path,
    features_dir: Path,
    encode: Callable | None = None,
    console: Any = None,
    make_env: Callable[[], Env] | None = None,
) -> RLRun:
    """Check/write the run folder, load the IL dataset and its features, plan training and held-out variations.

    `env` plans the variations; episodes run on simulators from `make_env` (default: `env` itself, which then
    serves one engine slot in-process and cannot be rebuilt after a crash)."""
    from rich.console import Console

    console = console or Console()
    # a file there would have every IL state embedded anew
    check_cache_folder(features_dir, "--features-dir" if config.features_dir is not None
                       else "the dataset's features folder (the default of --features-dir)")
    if config.init_checkpoint is not None:
        config = dataclasses.replace(config, features=start_features(config))
    check_resume(run_dir, config)
    table = load_il_table(dataset, config.unseen_tasks)
    settings = table.manifest.get("settings", {})
    episode_settings = EpisodeSettings(history_k=int(settings.get("history_k", DEFAULT_HISTORY_K)),
                                       max_obs_chars=int(settings.get("max_obs_chars", DEFAULT_MAX_OBS_CHARS)),
                                       max_steps=config.max_steps,
                                       max_steps_gold_factor=config.max_steps_gold_factor)
    engine = config.engine
    if make_env is None and (engine.batch_size > 1 or engine.workers > 1):
        raise HeraError("open_run: batch_size or workers > 1 need make_env (one simulator per slot)")
    spec = config.features
    if spec.device_signals:  # refused before anything is written or embedded
        raise HeraError(
            f"router inputs {list(spec.device_signals)} are the device's confidence in its proposal; stage 2 does "
            "not route with them yet (its rollouts and visit labels would need the device asked at every state): "
            "train that router with il.py and evaluate it with evaluate.py")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config_json(config))  # only once the inputs proved usable
    # The run gets its own copy of the dataset's cache: rollouts add states, the shipped cache stays untouched.
    source, target = (cache_path(d, spec.encoder, spec.text_design) for d in (features_dir, run_dir / FEATURES))
    if source.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # through a temp file: a kill mid-copy must not leave a cut-off cache that a rerun takes for the copy
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    try:
        il, num_new = ILData.featurize(table, spec, run_dir / FEATURES, encode)
    except FeatureCacheError as error:
        if not source.exists():
            raise
        # the damage came with the copy: deleting only the copy would bring it back on the next run
        raise FeatureCacheError(f"{error}, and the file this run's copy came from, {source} (--features-dir), or "
                                "the next run copies the damage again") from None
    if num_new:
        console.print(f"embedded {num_new} IL states missing from {source}")
    unseen = set(getattr(table, "unseen_tasks", ()) or ())
    seen_tasks = list(dict.fromkeys(t for t, s in zip(table.task.tolist(), table.split.tolist())
                                    if s != "test_unseen" and t not in unseen))
    tasks = list(config.tasks) or shortest_tasks(table, seen_tasks, config.num_tasks)
    train_pairs = [(t, v) for t in tasks for v in env.variations(t, "train")[: config.train_variations]]
    eval_pairs = [(t, v) for t in tasks for v in env.variations(t, "test")[: config.eval_variations]]
    if not train_pairs or not eval_pairs:
        raise HeraError(f"no training or held-out variations for tasks {tasks}; check --tasks and the variation counts")
    episodes = EpisodeSetup(make_env or single_env(env), cloud, device, episode_settings, engine,
                            run_dir / FEATURES, encode, config.progress)
    return RLRun(config, run_dir, il,
                 VariationPlan(env.name, tasks, train_pairs, eval_pairs), episodes, console)


def shortest_tasks(table: StepTable, tasks: Sequence[str], count: int) -> list[str]:
    """The `count` tasks whose IL episodes are shortest on average (all when count <= 0), in dataset order."""
    if count <= 0 or count >= len(tasks):
        return list(tasks)
    steps_per_episode = {t: np.sum(table.task == t) / max(len(set(table.episode_id[table.task == t].tolist())), 1)
                         for t in tasks}
    chosen = set(sorted(tasks, key=lambda t: (steps_per_episode[t], t))[:count])
    return [t for t in tasks if t in chosen]


def rollout_visits(run_dir: Path, iterations: Sequence[int], return_kind: str) -> VisitTable:
    """The visits of these iterations' exploration rollouts, each file read through its columns cache (validated
    the first time, from the cache after that), episodes numbered on across iterations."""
    tables = []
    for i in iterations:
        folder = iter_dir(run_dir, i)
        columns, _ = load_step_columns(existing_steps_file(folder / ROLLOUTS_FILE), folder / ROLLOUT_COLUMNS_FILE)
        tables.append(visit_table_from_columns(columns, return_kind))
    return concat_visit_tables(tables)


def load_run_visits(run_dir: Path) -> tuple[dict[str, Any], VisitTable]:
    """(settings, visits of every finished iteration's exploration rollouts, with the run's own return kind) of an
    RL run folder, for offline reuse (experiments/sweep.py's IL+RL label axis). Raises RunFolderError when the
    folder holds no finished iteration."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.exists():
        raise RunFolderError(f"{run_dir}: no config.json; not a run folder of experiments/rl_iter.py")
    settings = read_json_object(config_file, "the RL run's settings", "restore it, or pass another RL run folder")
    last = finished_iterations(run_dir)
    if last < 1:
        raise RunFolderError(f"{run_dir}: no finished RL iteration (iter_001/metrics.json); run rl_iter.py first")
    return settings, rollout_visits(run_dir, range(1, last + 1), stored_preference(settings).return_kind)


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    # later iterations and checkpoints grew from the damaged one: redo them all
    return [read_json_object(iter_dir(run_dir, i) / "metrics.json", "an iteration's metrics",
                             f"delete {iter_dir(run_dir, i)} and the later iter_* folders, and "
                             f"{run_dir / CHECKPOINTS / str(i)} and the later checkpoints, then rerun the same "
                             "command to redo those iterations")
            for i in range(finished_iterations(run_dir) + 1)]
