"""The RL loop (Hera stage 2): roll out -> visits -> groups -> preference labels -> fine-tune -> checkpoint -> eval.

Run folder layout (everything a resumed run needs is on disk; a finished iteration is never redone):

    config.json                 the settings; a resumed run must match them (except --iters)
    features/                   copy of the dataset's embedding cache, plus the states first seen in rollouts
    checkpoints/<i>/            orbax router after iteration i (0 = the IL start)
    iter_000/metrics.json       held-out evaluation of the IL router (+ cloud-only / device-only baselines)
    iter_<i>/rollouts.jsonl     exploration rollouts of iteration i (append-only, resumable per episode)
    iter_<i>/eval.jsonl         greedy held-out evaluation episodes of the router after iteration i
    iter_<i>/metrics.json       written last: marks iteration i finished
    summary.json                all finished iterations' metrics

Numerical work (returns, groups' labels, loss weights, training) is pure jax; this module is the file/env edge.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.agents.base import Agent
from hera_jax.dataset import StepTable, load_il_table
from hera_jax.envs.base import Env
from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec, featurize
from hera_jax.features.cache import cache_path, round_like_cache
from hera_jax.rl.config import RLConfig
from hera_jax.rl.exploration import exploration_rate
from hera_jax.rl.loss import LabelOptions, PreferenceBatch, Visits, preference_rows
from hera_jax.rl.preferences import GROUP_WEIGHTINGS, LABEL_RULES
from hera_jax.rl.train import PreferenceData, make_preference_train
from hera_jax.rl.visits import grouped_visits, groups_of_keys
from hera_jax.rollout.engine import (EngineConfig, Job, Policy, WorkerSetup, run_jobs, single_env,
                                    states_embedded)
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec, always
from hera_jax.rollout.records import read_steps, write_json_atomic
from hera_jax.rollout.routing import routed
from hera_jax.router.checkpoint import RouterBundle, latest_step, load_router, save_router
from hera_jax.router.il import check_finite_features
from hera_jax.router.scorer import RouterScorer, StateEmbedder
from hera_jax.router.train import predict_p_cloud
from hera_jax.runs import RunFolderError, check_resume, config_json

CHECKPOINTS = "checkpoints"
FEATURES = "features"

# Called after each finished iteration with its index (tests use it to simulate a kill between iterations).
IterationHook = Callable[[int], None]


def iter_dir(run_dir: Path, iteration: int) -> Path:
    return run_dir / f"iter_{iteration:03d}"


def finished_iterations(run_dir: Path) -> int:
    """Number of consecutive finished iterations after the start (-1: not even the IL start is finished)."""
    last = -1
    while (iter_dir(run_dir, last + 1) / "metrics.json").exists():
        last += 1
    return last


def agents_title(cloud: Agent, device: Agent) -> str:
    stand_ins = [a.name for a in (cloud, device) if a.is_stand_in]
    note = f" (STAND-INS, not LLMs: {', '.join(stand_ins)})" if stand_ins else ""
    return f"cloud={cloud.name}, device={device.name}{note}"


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


def run_episodes(run: RLRun, jobs: Sequence[Job], policies: Mapping[str, PolicyPlan], router_step: int | None,
                 path: Path, label: str) -> tuple[list[dict[str, Any]], int]:
    """Run the jobs not yet complete in `path` with the engine; return all their rows (in job order) and the number
    of states newly embedded."""
    config = run.config
    router = None if router_step is None else (run.run_dir / CHECKPOINTS, router_step, run.spec)
    make_setup = functools.partial(worker_setup, run.make_env, run.cloud, run.device, run.settings, policies, router,
                                   run.features_dir, run.encode)
    in_process = config.engine.workers == 1
    setup = make_setup(True) if in_process else None
    try:
        report = run_jobs(jobs, path, functools.partial(make_setup, False), run.engine, label, config.progress,
                          setup=setup)
    finally:
        if setup is not None and setup.close is not None:
            setup.close()
    order = {job.spec.episode_id: i for i, job in enumerate(jobs)}
    rows, _ = read_steps(path) if path.exists() else ([], None)
    rows = sorted((r for r in rows if r["episode_id"] in order), key=lambda r: (order[r["episode_id"]], r["step"]))
    return rows, states_embedded(report.accounting)


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


@dataclasses.dataclass
class RLRun:
    """Everything one RL run works with; built once by `open_run`, used by every iteration."""

    config: RLConfig
    run_dir: Path
    env: Env
    cloud: Agent
    device: Agent
    table: StepTable
    il_features: np.ndarray  # features of every IL table row (rounded like the cache)
    spec: FeatureSpec
    settings: EpisodeSettings
    tasks: list[str]
    train_pairs: list[tuple[str, int]]
    eval_pairs: list[tuple[str, int]]
    encode: Callable | None
    console: Any
    make_env: Callable[[], Env]  # one simulator per engine slot (Ray workers call it too: keep it picklable)
    engine: EngineConfig

    @property
    def features_dir(self) -> Path:
        return self.run_dir / FEATURES

    def policy(self, bundle: RouterBundle) -> RouterScorer:
        return RouterScorer(bundle, StateEmbedder(self.spec, self.features_dir, encode=self.encode))

    def meta(self) -> dict[str, Any]:
        return {
            "agents": {"cloud": self.cloud.describe(), "device": self.device.describe()},
            "agents_label": agents_title(self.cloud, self.device),
            "agents_are_stand_ins": bool(self.cloud.is_stand_in or self.device.is_stand_in),
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
    check_resume(run_dir, config)
    table = load_il_table(dataset, config.unseen_tasks)
    settings = table.manifest.get("settings", {})
    episode_settings = EpisodeSettings(history_k=int(settings.get("history_k", 3)),
                                       max_obs_chars=int(settings.get("max_obs_chars", 400)),
                                       max_steps=config.max_steps)
    engine = config.engine
    if make_env is None and (engine.batch_size > 1 or engine.workers > 1):
        raise HeraError("open_run: batch_size or workers > 1 need make_env (one simulator per slot)")
    if config.init_checkpoint is not None:
        spec = load_router(config.init_checkpoint).feature_spec
    else:
        spec = config.features
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config_json(config))  # only once the inputs proved usable
    # The run gets its own copy of the dataset's cache: rollouts add states, the shipped cache stays untouched.
    source, target = (cache_path(d, spec.encoder, spec.text_design) for d in (features_dir, run_dir / FEATURES))
    if source.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    features, num_new = featurize(table.state_key, table.state_text, table.step, spec, run_dir / FEATURES,
                                  encode=encode)
    check_finite_features(features, table.state_key, spec, run_dir / FEATURES)
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
    return RLRun(config, run_dir, env, cloud, device, table, round_like_cache(features), spec, episode_settings,
                 tasks, train_pairs, eval_pairs, encode, console, make_env or single_env(env), engine)


def shortest_tasks(table: StepTable, tasks: Sequence[str], count: int) -> list[str]:
    """The `count` tasks whose IL episodes are shortest on average (all when count <= 0), in dataset order."""
    if count <= 0 or count >= len(tasks):
        return list(tasks)
    steps_per_episode = {t: np.sum(table.task == t) / max(len(set(table.episode_id[table.task == t].tolist())), 1)
                         for t in tasks}
    chosen = set(sorted(tasks, key=lambda t: (steps_per_episode[t], t))[:count])
    return [t for t in tasks if t in chosen]


def start_router(run: RLRun) -> RouterBundle:
    """Checkpoint 0: the given IL checkpoint, or an IL router trained here on the dataset's train split."""
    ckpt_dir = run.run_dir / CHECKPOINTS
    if latest_step(ckpt_dir) is not None:
        return load_router(ckpt_dir, step=0, expected_spec=run.spec)
    config = run.config
    if config.init_checkpoint is not None:
        bundle = load_router(config.init_checkpoint, expected_spec=run.spec)
        meta = {"rl_start": f"loaded from {config.init_checkpoint}"}
    else:
        from hera_jax.router.il import train_and_evaluate

        dataset = config.dataset or "dataset"
        params, _, metrics, _ = train_and_evaluate(run.table, run.il_features, config.il_train, dataset,
                                                   config.threshold)
        bundle = RouterBundle(params, config.il_train, run.spec, {})
        meta = {"rl_start": "IL router trained in-process", "il_metrics": metrics}
    save_router(ckpt_dir, 0, bundle.params, bundle.train_config, run.spec, {**meta, **run.meta()})
    return load_router(ckpt_dir, step=0, expected_spec=run.spec)


def evaluate(run: RLRun, iteration: int) -> dict[str, float]:
    """Greedy router (no exploration) of checkpoint `iteration` on the held-out variations (the engine's workers
    load the checkpoint themselves)."""
    jobs = [Job(EpisodeSpec(run.env.name, t, v, "test", f"eval/iter{iteration}/{t}/{v}"), "greedy")
            for t, v in run.eval_pairs]
    rows, _ = run_episodes(run, jobs, {"greedy": ("routed", run.config.threshold, 0.0, 0)}, iteration,
                           iter_dir(run.run_dir, iteration) / "eval.jsonl", f"eval iter {iteration}")
    return episode_summary(rows)


def baselines(run: RLRun) -> dict[str, dict[str, float]]:
    out = {}
    for actor in ("cloud", "device"):
        jobs = [Job(EpisodeSpec(run.env.name, t, v, "test", f"eval/{actor}-only/{t}/{v}"), actor)
                for t, v in run.eval_pairs]
        rows, _ = run_episodes(run, jobs, {actor: ("always", actor)}, None,
                               iter_dir(run.run_dir, 0) / f"{actor}_only.jsonl", f"{actor}-only baseline")
        out[f"{actor}_only"] = episode_summary(rows)
    return out


def rollouts(run: RLRun, iteration: int) -> tuple[list[dict[str, Any]], int]:
    """Exploration rollouts of one iteration with the router of checkpoint `iteration - 1`; returns its rows and
    the number of states newly embedded."""
    config = run.config
    # the constant schedule keeps the exact Python float (exploration_rate computes in float32)
    epsilon = config.exploration if config.exploration_schedule == "constant" else float(exploration_rate(
        iteration, config.exploration, config.exploration_final, config.exploration_schedule,
        config.exploration_decay_iters))
    policies = {f"r{k}": ("routed", config.threshold, epsilon, exploration_seed(config.seed, iteration, k))
                for k in range(config.rollouts_per_task)}
    jobs = [Job(EpisodeSpec(run.env.name, t, v, "train", f"rl/iter{iteration}/{t}/{v}/r{k}"), f"r{k}")
            for t, v in run.train_pairs for k in range(config.rollouts_per_task)]
    return run_episodes(run, jobs, policies, iteration - 1, iter_dir(run.run_dir, iteration) / "rollouts.jsonl",
                        f"rollouts iter {iteration}")


def pooled_rows(run: RLRun, iteration: int) -> list[dict[str, Any]]:
    first = 1 if run.config.window <= 0 else max(1, iteration - run.config.window + 1)
    rows: list[dict[str, Any]] = []
    for j in range(first, iteration + 1):
        rows.extend(read_steps(iter_dir(run.run_dir, j) / "rollouts.jsonl")[0])
    return rows


def label_options(config: RLConfig) -> LabelOptions:
    """The label rule's settings of a config, as the (vmappable) arrays the pure label code takes."""
    return LabelOptions(
        cost_weight=jnp.float32(config.cost_weight),
        label_rule=jnp.int32(LABEL_RULES.index(config.label_rule)),
        return_tolerance=jnp.float32(config.return_tolerance),
        group_weighting=jnp.int32(GROUP_WEIGHTINGS.index(config.group_weighting)),
    )


class PreferenceSet(NamedTuple):
    """One iteration's fine-tune rows ([RL visits; IL training states]) and what they were built from."""

    data: PreferenceData
    stats: dict[str, Any]
    num_visits: int  # the first num_visits rows are RL visits


def preference_data(run: RLRun, bundle: RouterBundle, rows: Sequence[dict[str, Any]]) -> PreferenceSet:
    """Visits -> groups -> labels -> per-row targets and weights (RL visits, then the IL training states)."""
    config = run.config
    grouped = grouped_visits(rows, config.return_kind, config.return_estimate)
    visits = grouped.visits
    policy = run.policy(bundle)
    x_visits = policy.features(visits.state_text, visits.step)  # rounded like the cache
    il_mask = run.table.mask("train")
    il_group = groups_of_keys([k for k, m in zip(run.table.state_key, il_mask) if m], grouped.keys)
    batch: PreferenceBatch = jax.jit(preference_rows, static_argnames="num_groups")(
        Visits(jnp.asarray(grouped.group), jnp.asarray(visits.chose_cloud), jnp.asarray(grouped.returns),
               jnp.asarray(grouped.future_calls)),
        jnp.asarray(il_group), jnp.asarray(run.table.label[il_mask].astype(np.int32)), label_options(config),
        num_groups=len(grouped.keys), il_weight=config.il_weight, il_pos_weight=config.il_pos_weight,
    )
    n_v, n_il = len(visits), len(il_group)
    x = np.concatenate([x_visits, run.il_features[il_mask]]).astype(np.float32)
    prefer_cloud, valid = np.asarray(batch.preferences.prefer_cloud), np.asarray(batch.preferences.valid)
    margin, il_mixed = np.asarray(batch.preferences.margin), int((np.asarray(batch.weight)[n_v:] > 0).sum())
    stats = {
        "visits": n_v,
        "groups": len(grouped.keys),
        "groups_valid": int(valid.sum()),
        "label_cloud": int((valid & (prefer_cloud == 1)).sum()),
        "label_device": int((valid & (prefer_cloud == 0)).sum()),
        "ties": int((valid & (margin == 0)).sum()),
        "mean_margin": float(margin[valid].mean()) if valid.any() else 0.0,
        "il_rows_mixed": il_mixed,
        "il_rows_covered_by_groups": n_il - il_mixed,
    }
    return PreferenceSet(PreferenceData(jnp.asarray(x), batch.target, batch.weight), stats, n_v)


class FineTuned(NamedTuple):
    params: dict
    stats: dict[str, Any]


def fine_tune(run: RLRun, bundle: RouterBundle, data: PreferenceData, num_visit_rows: int, iteration: int
              ) -> FineTuned:
    config = run.config
    train = jax.jit(make_preference_train(config.train, tuple(bundle.train_config.hidden_sizes), data.x.shape[0]))
    rng = jax.random.fold_in(jax.random.key(config.train.seed + config.seed), iteration)
    result = train(rng, bundle.params, data)
    p = predict_p_cloud(bundle.train_config, result.params, data.x)
    predicted = (p >= config.threshold).astype(jnp.float32)
    rl_w = data.weight[:num_visit_rows]
    agree = jnp.sum(rl_w * (predicted[:num_visit_rows] == data.target[:num_visit_rows])) / jnp.maximum(
        jnp.sum(rl_w), 1e-12)
    stats = {
        "loss_first_epoch": float(result.epoch_loss[0]),
        "loss_last_epoch": float(result.epoch_loss[-1]),
        "margin_weighted_label_agreement": float(agree) if float(jnp.sum(rl_w)) > 0 else float("nan"),
    }
    return FineTuned(result.params, stats)


def run_iteration(run: RLRun, bundle: RouterBundle, iteration: int) -> tuple[RouterBundle, dict[str, Any]]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rows, newly_embedded = rollouts(run, iteration)
    timings["rollouts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data, group_stats, num_visits = preference_data(run, bundle, pooled_rows(run, iteration))
    ckpt_dir = run.run_dir / CHECKPOINTS
    train_stats: dict[str, Any] = {}
    if latest_step(ckpt_dir) is not None and (ckpt_dir / str(iteration)).exists():
        # Killed after the checkpoint but before metrics.json: the fine-tune is deterministic, reuse it.
        new_bundle = load_router(ckpt_dir, step=iteration, expected_spec=run.spec)
        train_stats = new_bundle.meta.get("train_stats", {})
    else:
        params, train_stats = fine_tune(run, bundle, data, num_visits, iteration)
        save_router(ckpt_dir, iteration, params, bundle.train_config, run.spec,
                    {"rl_iteration": iteration, "train_stats": train_stats, "groups": group_stats, **run.meta()})
        new_bundle = load_router(ckpt_dir, step=iteration, expected_spec=run.spec)
    timings["label_and_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation = evaluate(run, iteration)
    timings["eval"] = time.perf_counter() - t0
    metrics = {
        "iteration": iteration,
        "eval": evaluation,
        "rollouts": {**episode_summary(rows), "explore_steps": sum(r["route_reason"] == "explore" for r in rows),
                     "newly_embedded_states": newly_embedded},
        "groups": group_stats,
        "train": train_stats,
        "timings_s": timings,
        **run.meta(),
    }
    return new_bundle, metrics


def run_rl(run: RLRun, on_iteration_done: IterationHook | None = None) -> list[dict[str, Any]]:
    """Run (or resume) up to `config.iters` iterations; returns the metrics of iterations 0..iters."""
    config = run.config
    done = finished_iterations(run.run_dir)
    if done >= 0:
        run.console.print(f"resuming {run.run_dir}: iterations 0..{done} finished, continuing at {done + 1}")
    bundle = start_router(run) if done < 0 else load_router(run.run_dir / CHECKPOINTS, step=done,
                                                               expected_spec=run.spec)
    if done < 0:
        t0 = time.perf_counter()
        metrics = {"iteration": 0, "eval": evaluate(run, 0), **run.meta()}
        if config.baselines:
            metrics["baselines"] = baselines(run)
        metrics["timings_s"] = {"eval": time.perf_counter() - t0}
        write_json_atomic(iter_dir(run.run_dir, 0) / "metrics.json", metrics)
        done = 0
        _report(run)
        if on_iteration_done:
            on_iteration_done(0)
    for iteration in range(done + 1, config.iters + 1):
        bundle, metrics = run_iteration(run, bundle, iteration)
        write_json_atomic(iter_dir(run.run_dir, iteration) / "metrics.json", metrics)
        _report(run)
        if on_iteration_done:
            on_iteration_done(iteration)
    history = load_history(run.run_dir)
    write_json_atomic(run.run_dir / "summary.json", {"config": config_json(config), "iterations": history,
                                                     **run.meta()})
    return history


def load_run_rollouts(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(settings, exploration rollout rows of every finished iteration) of an RL run folder, for offline reuse
    (experiments/sweep.py's IL+RL label axis). Raises RunFolderError when the folder holds no finished iteration."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.exists():
        raise RunFolderError(f"{run_dir}: no config.json; not a run folder of experiments/rl_iter.py")
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    last = finished_iterations(run_dir)
    if last < 1:
        raise RunFolderError(f"{run_dir}: no finished RL iteration (iter_001/metrics.json); run rl_iter.py first")
    rows: list[dict[str, Any]] = []
    for i in range(1, last + 1):
        rows.extend(read_steps(iter_dir(run_dir, i) / "rollouts.jsonl")[0])
    return settings, rows


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((iter_dir(run_dir, i) / "metrics.json").read_text(encoding="utf-8"))
            for i in range(finished_iterations(run_dir) + 1)]


def _report(run: RLRun) -> None:
    run.console.print(iteration_table(load_history(run.run_dir), agents_title(run.cloud, run.device)))


def iteration_table(history: Sequence[dict[str, Any]], agents: str):
    """Two narrow tables (each fits 80 columns): held-out evaluation and rollouts per iteration, then the labels
    and fine-tune of each iteration."""
    from rich.console import Group
    from rich.table import Table

    fmt = lambda v, f="{:.3f}": "—" if v is None else f.format(v)  # noqa: E731
    results = Table(title=f"Cost-aware RL, greedy router on held-out variations — agents: {agents}")
    for c in ("iter", "eval\nsuccess", "eval\ncloud ratio", "rollout\nsuccess", "rollout\ncloud ratio", "time s"):
        results.add_column(c, justify="right")
    labels = Table(title="RL labels and fine-tune per iteration")
    for c in ("iter", "visits", "groups", "valid", "label\ncloud", "label\ndevice", "IL rows\nmixed", "agreement"):
        labels.add_column(c, justify="right")
    for m in history:
        ev, ro, gr, tr = m["eval"], m.get("rollouts", {}), m.get("groups", {}), m.get("train", {})
        name = "IL start" if m["iteration"] == 0 else str(m["iteration"])
        results.add_row(name, fmt(ev["success_rate"]), fmt(ev["cloud_step_ratio"]), fmt(ro.get("success_rate")),
                        fmt(ro.get("cloud_step_ratio")), f"{sum(m.get('timings_s', {}).values()):.0f}")
        if m["iteration"] > 0:
            labels.add_row(name, *(fmt(gr.get(k), "{}") for k in ("visits", "groups", "groups_valid", "label_cloud",
                                                                   "label_device", "il_rows_mixed")),
                           fmt(tr.get("margin_weighted_label_agreement")))
    base = history[0].get("baselines") if history else None
    for name, b in (base or {}).items():
        results.add_row(name.replace("_", "-"), f"{b['success_rate']:.3f}", f"{b['cloud_step_ratio']:.3f}",
                        "—", "—", "—")
    return Group(results, labels) if labels.row_count else results
