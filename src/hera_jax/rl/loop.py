"""The RL loop (Hera stage 2): roll out -> visits -> groups -> preference labels -> fine-tune -> checkpoint -> eval.

The run folder is `rl/run.py`, the episodes `rl/rollouts.py`, the table `rl/report.py`. Numerical work (returns,
groups' labels, loss weights, training) is pure jax; these modules are the file/env edge.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.rl.config import RLConfig
from hera_jax.rl.loss import PreferenceBatch, PreferenceOptions, Visits, preference_rows
from hera_jax.rl.preferences import GROUP_WEIGHTINGS, LABEL_RULES
from hera_jax.rl.report import print_report
from hera_jax.rl.rollouts import baselines, episode_summary, evaluate_held_out, pooled_visits, rollouts
from hera_jax.rl.run import CHECKPOINTS, ILData, RLRun, finished_iterations, iter_dir, load_history
from hera_jax.rl.train import PreferenceData, make_preference_train
from hera_jax.rl.visits import VisitTable, grouped_visits, groups_of_keys, heldout_groups
from hera_jax.files import write_json_atomic
from hera_jax.rollout.engine import engine_session
from hera_jax.router.checkpoint import RouterBundle, latest_step, load_router, save_router
from hera_jax.router.scorer import RouterScorer
from hera_jax.router.train import predict_p_cloud
from hera_jax.runs import config_json


# Called after each finished iteration with its index (tests use it to simulate a kill between iterations).
IterationHook = Callable[[int], None]


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
        params, _, metrics, _ = train_and_evaluate(run.il.table, run.il.features, config.il_train, dataset,
                                                   config.threshold)
        bundle = RouterBundle(params, config.il_train, run.spec, {})
        meta = {"rl_start": "IL router trained in-process", "il_metrics": metrics}
    save_router(ckpt_dir, 0, bundle.params, bundle.train_config, run.spec, {**meta, **run.meta()})
    return load_router(ckpt_dir, step=0, expected_spec=run.spec)


def preference_options(config: RLConfig) -> PreferenceOptions:
    """The preference settings of a config, as the (vmappable) arrays the pure preference code takes."""
    preference = config.preference
    return PreferenceOptions(
        cost_weight=jnp.float32(preference.cost_weight),
        label_rule=jnp.int32(LABEL_RULES.index(preference.rule)),
        return_tolerance=jnp.float32(preference.return_tolerance),
        group_weighting=jnp.int32(GROUP_WEIGHTINGS.index(preference.group_weighting)),
    )


class PreferenceSet(NamedTuple):
    """One iteration's fine-tune rows ([RL visits; IL training states]) and what they were built from."""

    data: PreferenceData
    stats: dict[str, Any]
    num_visits: int  # the first num_visits rows are RL visits


def preference_data(run: RLRun, bundle: RouterBundle, rows: Sequence[dict[str, Any]] | VisitTable) -> PreferenceSet:
    """Visits (step records, or their table) -> groups -> labels -> per-row targets and weights (RL visits, then the
    IL training states)."""
    return preference_set(run.config, run.scorer(bundle), run.il, rows)


def preference_set(config: RLConfig, scorer: RouterScorer, il: ILData, rows: Sequence[dict[str, Any]] | VisitTable
                   ) -> PreferenceSet:
    """`preference_data` from its parts: the settings, the scorer that featurizes the visits, the IL data."""
    grouped = grouped_visits(rows, config.preference.return_kind, config.preference.return_estimate)
    visits = grouped.visits
    x_visits = scorer.device_features(visits.state_text, visits.step)  # rounded like the cache, on the device
    il_mask = il.table.mask("train")
    il_group = groups_of_keys([k for k, m in zip(il.table.state_key, il_mask) if m], grouped.keys)
    num_groups = len(grouped.keys)
    build = jax.jit(preference_rows, static_argnames="num_groups")
    arrays = (Visits(jnp.asarray(grouped.group), jnp.asarray(visits.chose_cloud), jnp.asarray(grouped.returns),
                     jnp.asarray(grouped.future_calls)),
              jnp.asarray(il_group), jnp.asarray(il.table.label[il_mask].astype(np.int32)),
              preference_options(config))
    weights = {"num_groups": num_groups, "il_weight": config.il_weight, "il_pos_weight": config.il_pos_weight}
    batch: PreferenceBatch = build(*arrays, **weights)
    heldout_weight, train_batch = None, batch
    if config.early_stopping_groups_percent > 0:
        # held-out groups leave training (their IL rows too, so IL labels do not leak them) and score each epoch
        heldout = heldout_groups(grouped.keys, config.early_stopping_groups_percent)
        il_in_heldout = (il_group >= 0) & heldout[np.clip(il_group, 0, max(num_groups - 1, 0))]
        train_batch = build(*arrays, **weights, il_known=jnp.asarray(~il_in_heldout),
                            excluded_groups=jnp.asarray(heldout))
        heldout_weight = batch.weight * jnp.concatenate([jnp.asarray(heldout)[grouped.group],
                                                         jnp.zeros(len(il_group), bool)])
    n_v, n_il = len(visits), len(il_group)
    # on the device: a million visits' features are gigabytes that need no host copy
    x = jnp.concatenate([x_visits, jnp.asarray(il.features)[jnp.asarray(np.flatnonzero(il_mask))]])
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
    if heldout_weight is not None:
        stats["heldout_groups_valid"] = int((valid & heldout).sum())
    return PreferenceSet(PreferenceData(x, train_batch.target, train_batch.weight, heldout_weight),
                         stats, n_v)


class FineTuned(NamedTuple):
    params: dict
    stats: dict[str, Any]


def fine_tune(config: RLConfig, bundle: RouterBundle, data: PreferenceData, num_visit_rows: int, iteration: int
              ) -> FineTuned:
    train = jax.jit(make_preference_train(config.train, tuple(bundle.train_config.hidden_sizes), data.x.shape[0]))
    rng = jax.random.fold_in(jax.random.key(config.train.seed + config.seed), iteration)
    result = train(rng, bundle.params, data)
    p = predict_p_cloud(bundle.train_config, result.params, data.x)
    predicted = (p >= config.threshold).astype(jnp.float32)
    rl_w = data.weight[:num_visit_rows]
    agree = jnp.sum(rl_w * (predicted[:num_visit_rows] == data.target[:num_visit_rows])) / jnp.maximum(
        jnp.sum(rl_w), 1e-12)
    stats = {
        # share of the RL-labelled visits (weighted as in the loss: by margin by default) that the fine-tuned
        # router routes as labelled at its threshold
        # (None when no visit carries an RL label: nothing to agree with)
        "margin_weighted_label_agreement": float(agree) if float(jnp.sum(rl_w)) > 0 else None,
        "loss_first_epoch": float(result.epoch_loss[0]),
        "loss_last_epoch": float(result.epoch_loss[-1]),
        # early stopping: which epoch was kept (-1: none beat the start) and the held-out loss along the way
        **({"kept_epoch": int(result.best_epoch), "heldout_loss_first_epoch": float(result.heldout_loss[0]),
            "heldout_loss_min": float(np.min(np.asarray(result.heldout_loss))),
            "heldout_loss_last_epoch": float(result.heldout_loss[-1])}
           if data.heldout_weight is not None else {}),
    }
    return FineTuned(result.params, stats)


def run_iteration(run: RLRun, bundle: RouterBundle, iteration: int) -> tuple[RouterBundle, dict[str, Any]]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rows, newly_embedded = rollouts(run, iteration)
    timings["rollouts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data, group_stats, num_visits = preference_data(run, bundle, pooled_visits(run, iteration))
    ckpt_dir = run.run_dir / CHECKPOINTS
    train_stats: dict[str, Any] = {}
    if latest_step(ckpt_dir) is not None and (ckpt_dir / str(iteration)).exists():
        # Killed after the checkpoint but before metrics.json: the fine-tune is deterministic, reuse it.
        new_bundle = load_router(ckpt_dir, step=iteration, expected_spec=run.spec)
        train_stats = new_bundle.meta.get("train_stats", {})
    else:
        params, train_stats = fine_tune(run.config, bundle, data, num_visits, iteration)
        save_router(ckpt_dir, iteration, params, bundle.train_config, run.spec,
                    {"rl_iteration": iteration, "train_stats": train_stats, "groups": group_stats, **run.meta()})
        new_bundle = load_router(ckpt_dir, step=iteration, expected_spec=run.spec)
    timings["label_and_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation = evaluate_held_out(run, iteration)
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
    with engine_session(run.episodes.engine) as session:  # Ray workers, if any, started once for every rollout phase
        episodes = dataclasses.replace(run.episodes, session=session)
        return _run_iterations(dataclasses.replace(run, episodes=episodes), on_iteration_done)


def _run_iterations(run: RLRun, on_iteration_done: IterationHook | None) -> list[dict[str, Any]]:
    config = run.config
    done = finished_iterations(run.run_dir)
    if done >= 0:
        load_history(run.run_dir)  # a damaged metrics file is reported now, not after another iteration's rollouts
        run.console.print(f"resuming {run.run_dir}: iterations 0..{done} finished, continuing at {done + 1}")
    bundle = start_router(run) if done < 0 else load_router(run.run_dir / CHECKPOINTS, step=done,
                                                               expected_spec=run.spec)
    if done < 0:
        t0 = time.perf_counter()
        metrics = {"iteration": 0, "eval": evaluate_held_out(run, 0), **run.meta()}
        if config.baselines:
            metrics["baselines"] = baselines(run)
        metrics["timings_s"] = {"eval": time.perf_counter() - t0}
        write_json_atomic(iter_dir(run.run_dir, 0) / "metrics.json", metrics)
        done = 0
        print_report(run)
        if on_iteration_done:
            on_iteration_done(0)
    for iteration in range(done + 1, config.iters + 1):
        bundle, metrics = run_iteration(run, bundle, iteration)
        write_json_atomic(iter_dir(run.run_dir, iteration) / "metrics.json", metrics)
        print_report(run)
        if on_iteration_done:
            on_iteration_done(iteration)
    history = load_history(run.run_dir)
    write_json_atomic(run.run_dir / "summary.json", {"config": config_json(config), "iterations": history,
                                                     **run.meta()})
    return history
