"""Evaluate routers against baselines (experiments/evaluate.py is its command line): success vs cloud-step ratio
frontiers on held-out variations and unseen task types of one environment, budget targeting, headline numbers, a
plot, or the same recomputed offline from recorded rollouts.

A router may be evaluated in an environment it was not trained on (cross-environment) when its features and state
format match; the output names the data each router was trained on.

The default agents are STAND-INS (cloud = gold-path oracle, device = perturbed gold path), not LLMs; every output
says so. Run folder: frontier.png, points.csv/json (every point), episodes.csv, summary.json (headline numbers),
rollouts.jsonl (every step, for --replay-from), config.json.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape

from hera_jax.agents.config import agent_factories
from hera_jax.dataset import (STATE_FORMAT_FIELDS, dataset_env, hold_out_tasks, load_il_table,
                              manifest_agents_title)
from hera_jax.envs.profiles import profile
from hera_jax.cli import report_console
from hera_jax.errors import HeraError
from hera_jax.evaluate.baselines import BASELINES, LIMIT_BASELINES, baseline_knobs, task_level
from hera_jax.evaluate.episodes import episode_table, episodes_per_task
from hera_jax.evaluate.report import (REFERENCES, headline, interval_tables, plot_frontiers, points_table,
                                      rich_budget_frontier, rich_headline, rich_limit_shares, rich_paired_areas,
                                      with_intervals)
from hera_jax.evaluate.routers import parse_routers, rl_run_hint, router_training, training_title
from hera_jax.evaluate.runner import EvalPlan, MethodPoint, eval_context, plan_eval_episodes, run_online
from hera_jax.features.cache import check_cache_folder
from hera_jax.rollout.engine import states_embedded
from hera_jax.files import read_json_object, write_json_atomic
from hera_jax.rollout.records import read_manifest, read_steps, shown_problems
from hera_jax.runs import RUNS_ROOT, RunFolderError, check_resume, config_json, locked_run_dir, new_run_dir
from hera_jax.evaluate.config import EvalConfig  # noqa: F401  (re-exported)

ROLLOUTS_FILE = "rollouts.jsonl"


def _method_title(method: str, training: dict[str, list[dict]] | None = None) -> str:
    if method in BASELINES:
        return BASELINES[method].TITLE
    if method in ("device_only", "cloud_only"):
        return method.replace("_", " ")
    if training and method in training:
        return f"router: {method} (trained on {training_title(training[method])})"
    return f"router: {method}"


def write_outputs(out: Path, rows: list[dict], config: EvalConfig, agents: dict, notes: list[str],
                  timings: dict, console, training: dict[str, list[dict]] | None = None) -> dict:
    """Everything derived from the recorded rollouts: episodes/points CSV+JSON, summary, plot, table."""
    episodes = episode_table(rows, config.prices)
    if episodes.empty:
        raise HeraError(f"{out}: no complete evaluation episodes to report")
    point_intervals, method_intervals = interval_tables(episodes, LIMIT_BASELINES, seed=config.seed,
                                                        budget=config.cloud_budget)
    compared = None
    if config.compare_to is not None:
        if config.compare_to not in set(episodes.method):
            raise HeraError(f"--compare-to {config.compare_to!r}: no such method in {out}; it has "
                            f"{', '.join(sorted(set(episodes.method)))}")
        compared = interval_tables(episodes, seed=config.seed, reference=config.compare_to,
                                   budget=config.cloud_budget)[1]
    points = with_intervals(points_table(episodes), point_intervals)
    order = [m for m in dict.fromkeys(points.method) if m not in ("device_only", "cloud_only")]
    methods = ["device_only", "cloud_only"] + sorted(order, key=lambda m: (m in BASELINES, m))
    summary = headline(points, config.cloud_budget, [m for m in methods if m in set(points.method)], method_intervals)
    agents_title = manifest_agents_title(agents)
    titles = {m: _method_title(m, training) for m in methods}
    episodes.to_csv(out / "episodes.csv", index=False)
    points.assign(label=points.method.map(titles)).to_csv(out / "points.csv", index=False)
    write_json_atomic(out / "points.json", json.loads(points.to_json(orient="records")))
    picked = {r["method"]: r["budget_param"] for _, r in summary.iterrows()
              if "budget_param" in r and not pd.isna(r["budget_param"])}
    plot_path = plot_frontiers(points, out / "frontier.png", agents_title, config.cloud_budget, titles, picked,
                               method_intervals)
    result = {
        "agents": agents,
        "agents_title": agents_title,
        "cloud_budget": config.cloud_budget,
        "prices": dataclasses.asdict(config.prices),
        "tokens_estimated": bool(episodes.tokens_estimated.any()),
        "headline": json.loads(summary.to_json(orient="records")),
        "intervals": {
            "confidence": 0.95, "seed": config.seed,
            "method": "scipy.stats.bootstrap (BCa; percentile where BCa is undefined), 9999 resamples of the "
                      "(task, variation) episode units of each eval split, the same resample for every method "
                      "(paired); *_ci keys in headline",
            "frontier_areas": json.loads(method_intervals.to_json(orient="records")),
            **({f"area_minus_{config.compare_to}": json.loads(compared.to_json(orient="records"))}
               if compared is not None else {}),
        },
        "router_training": training or {},
        "notes": notes,
        "timings_s": timings,
        "plot": str(plot_path),
    }
    write_json_atomic(out / "summary.json", result)
    console.print(rich_headline(summary, config.cloud_budget, f"Routing frontier — {agents_title}", titles))
    shares = rich_limit_shares(summary, [m for m in methods if m not in BASELINES and m not in REFERENCES],
                               list(LIMIT_BASELINES), titles)
    if shares is not None:
        console.print(shares)
    if len(method_intervals):
        console.print(rich_budget_frontier(method_intervals, config.cloud_budget, titles, agents_title))
    if compared is not None:
        console.print(rich_paired_areas(compared, config.compare_to, titles))
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
    if result["tokens_estimated"]:
        console.print("[yellow]note[/]: cloud tokens and $ are ESTIMATED from prompt length (the cloud agent reports "
                      "none); prices: " + config.prices.model)
    console.print(f"plot: {plot_path}\npoints: {out / 'points.csv'}  summary: {out / 'summary.json'}")
    return result


def replay(config: EvalConfig, console) -> dict:
    source = config.replay_from
    if config.routers:  # a replay scores the recorded rollouts: another router's choices were never made there
        raise HeraError(f"--routers does not apply with --replay-from: the replay recomputes the routers recorded in "
                        f"{source}; drop --routers, or evaluate those routers without --replay-from")
    if not (source / ROLLOUTS_FILE).exists():
        raise HeraError(f"{source}: no {ROLLOUTS_FILE}; --replay-from needs a folder written by experiments/evaluate.py")
    recorded = (read_json_object(source / "config.json", "the evaluation's settings",
                                 "restore it from the run, or delete it to replay without the recorded settings")
                if (source / "config.json").exists() else {})
    rows, report = read_steps(source / ROLLOUTS_FILE)
    for problem in shown_problems(report):
        console.print(f"[yellow]warning[/]: {escape(problem)}")  # a reported row value may look like markup
    out = config.out or source
    notes = list(recorded.get("notes", [])) + [f"replayed offline from {source} (no agent or simulator was called)"]
    # A finished evaluation writes summary.json last: without it (or when that summary was itself a partial
    # replay) the run was interrupted, and the tables cover only the episodes that finished.
    try:
        recorded_summary = json.loads((source / "summary.json").read_text())
    except (OSError, ValueError):  # missing, or cut by a kill while it was written
        recorded_summary = None
    finished = isinstance(recorded_summary, dict) and not recorded_summary.get("timings_s", {}).get("partial")
    if not finished:
        mix = "; ".join(f"{split}: " + ", ".join(f"{task} {n}" for task, n in per_task.items())
                        for split, per_task in episodes_per_task(rows).items())
        partial = (f"PARTIAL: {source} is an interrupted evaluation; these results cover only the {report.num_episodes} "
                   f"episodes that finished (rerun the command that started it, with --out {shlex.quote(str(source))}, to complete it). "
                   f"Short episodes finish first, so check the finished episodes per task against the plan's before "
                   f"reading the tables: {mix or 'none'}")
        console.print(f"[yellow]warning[/]: {escape(partial)}")
        notes.append(partial)
    with locked_run_dir(out, "evaluate.py run"):
        if out != source:
            write_json_atomic(out / "config.json", {**recorded, "replay": config_json(config)})
        return write_outputs(out, rows, config, recorded.get("agents", {}), notes,
                             {"replay": True, "partial": not finished}, console, recorded.get("router_training"))


def evaluate(config: EvalConfig) -> dict:
    """Run (or resume, or with --replay-from recompute) an evaluation and write its run folder."""
    console = report_console(100)  # tables fit 80 columns
    if config.replay_from is not None:
        return replay(config, console)
    started = time.perf_counter()
    unknown = [b for b in config.baselines if b not in BASELINES]
    if unknown:
        raise HeraError(f"unknown baseline(s) {unknown}; available: {', '.join(BASELINES)}")
    if not 0.0 <= config.cloud_budget <= 1.0:
        raise HeraError(f"--cloud-budget must be in [0, 1], got {config.cloud_budget}")
    for flag, folder in (("--features-cache", config.features_cache), ("--features-dir", config.features_dir)):
        if folder is not None:  # found now, not after the episodes ran
            check_cache_folder(folder, flag)
    dataset = config.dataset_dir()
    manifest = read_manifest(dataset)
    settings = manifest.get("settings", {})
    router_paths = parse_routers(config.routers, config.env)
    if not config.routers:
        hint = rl_run_hint(config.env, router_paths["il"][0])
        if hint:
            console.print(hint)
    eval_env = dataset_env(manifest) or config.env
    if eval_env != config.env:
        raise HeraError(f"{dataset}/manifest.json: env.name is {eval_env!r}, not --env {config.env!r}; pass the "
                        "dataset of the environment being evaluated")
    # --- which data each router was trained on; routers trained on other state formats are refused ------------
    from hera_jax.router.checkpoint import latest_step, load_router

    # the step each router loads, resolved once so the report and config.json say which checkpoint was used
    router_paths = {name: (path, latest_step(path) if step is None else step)
                    for name, (path, step) in router_paths.items()}
    bundles = {name: load_router(path, step) for name, (path, step) in router_paths.items()}
    for name, (path, step) in router_paths.items():
        console.print(f"router {name}: checkpoint step {step} of {path}")
    training = {name: router_training(path, bundles[name].meta) for name, (path, _) in router_paths.items()}
    for name, sources in training.items():
        for source in sources:
            for field in STATE_FORMAT_FIELDS:
                mine, theirs = settings.get(field), source.get(field)
                if mine is not None and theirs is not None and mine != theirs:
                    raise HeraError(
                        f"router {name} was trained on {source['dataset']} with settings.{field}={theirs!r}, but "
                        f"{dataset}/manifest.json has {field}={mine!r}: its states would be built differently than "
                        "in training; evaluate it on data collected with the same setting"
                    )
    unseen = config.unseen_tasks
    if unseen is None:
        # the first router's unseen tasks in this environment, if it was trained here; else this env's default
        first = next(iter(training.values()))
        own = [s for s in first if s.get("env") == config.env and s.get("unseen_tasks") is not None]
        unseen = tuple(own[0]["unseen_tasks"]) if own else profile(config.env).unseen_tasks
    table = load_il_table(dataset, ())
    table = hold_out_tasks(table, [t for t in unseen if t in set(table.task.tolist())])
    dataset_seen = sorted(set(table.task.tolist()) - set(unseen))
    if config.tasks == ("all",):
        seen = tuple(dataset_seen)
    elif config.tasks:
        seen = config.tasks
    else:
        seen = tuple(t for t in profile(config.env).eval_tasks or () if t in dataset_seen) or tuple(dataset_seen)

    out = config.out or new_run_dir(RUNS_ROOT, "evaluate")
    if config.out is None:  # so that an interrupted run can be resumed
        console.print(f"evaluation run folder: {out}  (rerun with --out {shlex.quote(str(out))} to resume)")
    with locked_run_dir(out, "evaluate.py run"):
        if (out / "config.json").exists():
            recorded = read_json_object(out / "config.json", "the evaluation's settings",
                                        "restore it, or choose a new --out (the run's other files are untouched)")
            check_resume(out, config, stored=recorded.get("config", {}))
            check_same_routers(out, recorded, router_checkpoints(router_paths, bundles))
        return evaluate_into(config, out, console, started, dataset, settings, router_paths, bundles, training,
                             unseen, table, seen)


def router_checkpoints(router_paths: dict, bundles: dict) -> dict[str, dict]:
    """Which checkpoint each router loaded: its folder@step and the digest of its parameters (None for routers
    saved before the digest existed)."""
    return {name: {"checkpoint": f"{path}@{step}", "params_sha256": bundles[name].meta.get("params_sha256")}
            for name, (path, step) in router_paths.items()}


def check_same_routers(out: Path, recorded: dict, loaded: dict[str, dict]) -> None:
    """A resumed evaluation must score with the checkpoints it started with: a router given without @STEP loads
    its folder's newest step, which moves when training goes on, and one run must not mix two steps' episodes."""
    diffs = []
    if "routers" in recorded and sorted(recorded["routers"]) != sorted(loaded):
        diffs.append(f"routers: the run has {', '.join(sorted(recorded['routers'])) or 'none'}, now "
                     f"{', '.join(sorted(loaded)) or 'none'}")
    for name, now in loaded.items():
        was = recorded.get("routers", {}).get(name)
        if was is not None and was != now["checkpoint"]:
            diffs.append(f"router {name}: the run used {was}, now {now['checkpoint']}")
            continue
        digest = recorded.get("router_params_sha256", {}).get(name)
        if digest and now["params_sha256"] and digest != now["params_sha256"]:
            diffs.append(f"router {name}: the parameters of {now['checkpoint']} changed since the run started")
    if diffs:
        raise RunFolderError(f"{out}: {'; '.join(diffs)}; resume with the same checkpoint (NAME=DIR@STEP) or choose "
                             "a new --out")


def evaluate_into(config: EvalConfig, out: Path, console, started: float, dataset, settings: dict,
                  router_paths: dict, bundles: dict, training: dict, unseen, table, seen) -> dict:
    """Run the evaluation episodes into `out` (locked; resumed per episode) and write the report."""

    # --- edges: encoder caches, routers, agents, environment --------------------------------------------------
    from hera_jax.envs import simulator_factory
    from hera_jax.rollout.episode import DEFAULT_HISTORY_K, DEFAULT_MAX_OBS_CHARS, DEFAULT_MAX_STEPS, EpisodeSettings

    read_dirs = [config.features_path()] + [
        Path(source["dataset"]) / "features" for sources in training.values() for source in sources
    ]
    device_seed = config.agents.seed(default=settings.get("device_seed", 0))
    make_cloud, make_device = agent_factories(config.agents, config.env, share=config.engine.workers,
                                              default_seed=device_seed, memo_dir=config.features_path())
    env_options = profile(config.env).env_options(read_manifest(dataset))
    max_steps = settings.get("max_steps", DEFAULT_MAX_STEPS) if config.max_steps is None else config.max_steps
    eval_plan = EvalPlan(
        make_env=simulator_factory(config.env, max_steps, **env_options),
        make_cloud=make_cloud,
        make_device=make_device,
        settings=EpisodeSettings(history_k=settings.get("history_k", DEFAULT_HISTORY_K),
                                 max_obs_chars=settings.get("max_obs_chars", DEFAULT_MAX_OBS_CHARS), max_steps=max_steps,
                                 max_steps_gold_factor=config.max_steps_gold_factor),
        routers=router_paths, features_cache=config.features_cache, read_dirs=tuple(dict.fromkeys(read_dirs)),
        seed=config.seed, options={k.field: getattr(config, k.field) for k in baseline_knobs()},
    )
    worker = eval_context(eval_plan)  # the in-process worker; its context also decides which baselines can run
    ctx = worker.context
    for name, scorer in ctx.routers.items():  # refused now, not at the first routed state
        lacking = [n for n in scorer.signal_names if n.removeprefix("device_") not in ctx.device.confidence_signals]
        if lacking:
            raise HeraError(f"router {name} takes the device's {', '.join(lacking)} as input, which device "
                            f"{ctx.device.name} does not report (a scoring device does: --agents.device gguf-score)")
    agents = {"cloud": ctx.cloud.describe(), "device": ctx.device.describe()}
    env = simulator_factory(config.env, max_steps, **env_options)()  # plans the variations
    notes = []
    for name, sources in training.items():
        if not sources:
            notes.append(f"router {name}: its checkpoint does not say which data it was trained on")
        elif config.env not in {s.get("env") for s in sources}:
            notes.append(f"router {name} was trained on {training_title(sources)} only, not on {config.env}: "
                         "cross-environment, every task here is unseen to it")
    try:
        t0 = time.perf_counter()
        if "task_level" in config.baselines:
            ctx.task_router = _train_task_router(table, next(iter(worker.embedders.values())).embed)
        task_router_s = time.perf_counter() - t0

        # each baseline's swept values (its VALUES knob; None: one point)
        knobs = {name: tuple(float(k) for k in getattr(config, module.VALUES.field)) if module.VALUES else (None,)
                 for name, module in BASELINES.items()}
        all_splits, test_splits = ("dev", "test", "test_unseen"), ("test", "test_unseen")
        points = [MethodPoint(m, None, "reference", test_splits) for m in ("device_only", "cloud_only")]
        thresholds = router_thresholds(config, ctx.routers, table, dataset)
        for name in ctx.routers:
            points += [MethodPoint(name, t, "router", all_splits) for t in thresholds[name]]
        for name in config.baselines:
            module = BASELINES[name]
            reason = module.unavailable(ctx)
            if reason is not None:
                notes.append(f"{module.TITLE} baseline unavailable: {reason}")
                continue
            splits = test_splits if knobs[name] == (None,) else all_splits
            points += [MethodPoint(name, p, name, splits) for p in knobs[name]]
        eval_plan = dataclasses.replace(
            eval_plan, points=tuple(points),
            task_router=dataclasses.replace(ctx.task_router, embed=None) if ctx.task_router is not None else None)

        per_split = {"dev": config.dev_per_task, "test": config.test_per_task, "test_unseen": config.unseen_per_task}
        plan = plan_eval_episodes(env, seen, unseen, per_split, config.seen_test_split)
        write_json_atomic(out / "config.json", {
            "config": config_json(config), "agents": agents,
            "routers": {k: f"{p}@{step}" for k, (p, step) in router_paths.items()},
            "router_params_sha256": {name: loaded["params_sha256"]
                                     for name, loaded in router_checkpoints(router_paths, bundles).items()},
            "router_training": training,
            "router_thresholds": thresholds,
            "dataset": str(dataset), "seen_tasks": list(seen), "unseen_tasks": list(unseen),
            "device_seed": device_seed, "notes": notes,
            "episodes": [dataclasses.asdict(e) for e in plan],
        })
        t0 = time.perf_counter()
        ran = run_online(env.name, plan, eval_plan, out / ROLLOUTS_FILE, config.engine, show_progress=config.progress,
                         worker=worker)
        counts = {"episodes_run": ran.episodes_run, "episodes_resumed": ran.episodes_resumed,
                  "episodes_recovered": ran.episodes_recovered, "steps_run": ran.steps_run}
        rollout_s = time.perf_counter() - t0
    finally:
        worker.flush()
        env.close()
    rows, report = read_steps(out / ROLLOUTS_FILE)
    for problem in shown_problems(report):
        console.print(f"[yellow]warning[/]: {escape(problem)}")  # a reported row value may look like markup
    timings = {"task_router": task_router_s, "rollouts": rollout_s, "total": time.perf_counter() - started,
               "states_embedded": states_embedded(ran.accounting), **counts}
    recovered = counts["episodes_recovered"]
    console.print(
        f"{counts['episodes_run']} episodes run ({counts['episodes_resumed']} already on disk"
        f"{f', {recovered} finished before an interruption' if recovered else ''}), {counts['steps_run']} "
        f"steps, {timings['states_embedded']} states newly embedded; rollouts {rollout_s:.0f}s, total "
        f"{timings['total']:.0f}s"
    )
    return write_outputs(out, rows, config, agents, notes, timings, console, training)



def router_thresholds(config: EvalConfig, routers: dict, table, dataset) -> dict[str, tuple[float, ...]]:
    """Each router's thresholds: --thresholds, or with --threshold-shares the (1 - share) quantiles of its p_cloud on
    the dataset's dev states, rounded to 4 significant digits (they name the points' episodes)."""
    if not config.threshold_shares:
        return {name: tuple(config.thresholds) for name in routers}
    from hera_jax.serve.budget import share_threshold

    dev = np.flatnonzero(table.mask("dev"))
    if not dev.size:
        raise HeraError(f"--threshold-shares calibrates on the dev states of {dataset}, which has none; pass "
                        "--thresholds instead")
    texts = [table.distinct_texts[i] for i in table.state_index[dev].tolist()]
    signals = {name: values[dev] for name, values in table.device_signals.items()}
    out = {}
    for name, scorer in routers.items():
        p_cloud = scorer.p_cloud(scorer.features(texts, table.step[dev], signals))
        out[name] = tuple(dict.fromkeys(float(f"{share_threshold(p_cloud, share):.4g}")
                                        for share in config.threshold_shares))
    return out


def _train_task_router(table, embed) -> task_level.TaskRouter:
    """Fit the task-level baseline on the IL dataset's train episodes (first state -> share of needs-cloud steps)."""
    train = table.mask("train")
    episodes, index = np.unique(table.episode_id[train], return_inverse=True)
    targets = np.asarray(task_level.episode_targets(index, table.label[train], len(episodes)))
    first = np.flatnonzero(train & (table.step == 0))
    order = np.searchsorted(episodes, table.episode_id[first])
    texts = [None] * len(episodes)
    for position, row in zip(order, first):
        texts[position] = table.distinct_texts[table.state_index[row]]
    if any(t is None for t in texts):
        raise HeraError("some train episodes have no step 0; the dataset is incomplete")
    return task_level.train(texts, targets, embed)

