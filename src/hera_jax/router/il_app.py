"""Stage 1 (imitation learning) as one run (experiments/il.py is its command line): train the router to predict
"needs cloud" from state features.

Loads a collected dataset (default: the shipped ScienceWorld one, collected with STAND-IN agents, see its
manifest), embeds each distinct state once (cached), trains the jitted Flax router with early stopping on dev,
prints dev / test / unseen-task metrics, and writes metrics.json and an orbax checkpoint into a new run folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from pathlib import Path

import jax
import numpy as np

from hera_jax.dataset import (DataConfig, check_dataset_env, check_trainable, dataset_env, load_union_table,
                              manifest_agents_title, resolve_datasets)
from hera_jax.rollout.records import read_manifest, shown_problems
from hera_jax.cli import report_console
from hera_jax.errors import HeraError
from hera_jax.files import write_json_atomic
from hera_jax.router.il import build_features, split_metrics, train_and_evaluate
from hera_jax.router.sharding import data_mesh
from hera_jax.runs import RUNS_ROOT, config_json, locked_run_dir, new_run_dir, require_empty
from hera_jax.router.il_config import ILConfig  # noqa: F401  (re-exported)


def plot_training_curve(result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = int(result.epochs_run)
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(np.asarray(result.train_loss[:epochs]), label="train")
    ax_loss.plot(np.asarray(result.dev_loss[:epochs]), label="dev")
    ax_loss.set(xlabel="epoch", ylabel="weighted BCE", title="loss")
    ax_loss.legend()
    ax_auc.plot(np.asarray(result.dev_auroc[:epochs]), color="C1")
    ax_auc.axvline(int(result.best_epoch), color="grey", ls="--", label=f"best epoch {int(result.best_epoch)}")
    ax_auc.set(xlabel="epoch", ylabel="AUROC", title="dev AUROC")
    ax_auc.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_il(config: ILConfig) -> dict:
    """Train the IL router into a new run folder; returns the summary written to metrics.json."""
    console = report_console(120)
    started = time.perf_counter()
    dataset = config.dataset_dir()
    # il.py learns its environment from the dataset; an --env set beside --dataset must name the same one (left at
    # its default it only picks the default dataset). A missing manifest is reported with the dataset's other files.
    env_default = next(f.default for f in dataclasses.fields(DataConfig) if f.name == "env")
    if config.env != env_default and (Path(dataset) / "manifest.json").is_file():
        check_dataset_env(dataset_env(read_manifest(dataset)), config.env, dataset)
    out = config.out or new_run_dir(RUNS_ROOT, "il")
    with locked_run_dir(out, "il.py run"):
        require_empty(out)
        return train_into(config, Path(dataset), out, console, started)


def _import_late_modules() -> None:
    """Import what only a run's end uses (the orbax checkpointer, matplotlib) while the run loads, embeds and
    trains on an accelerator, when the host mostly waits. An import that fails here fails again, and is reported,
    where the module is used."""
    try:
        importlib.import_module("hera_jax.router.checkpoint")
        importlib.import_module("matplotlib").use("Agg")
        importlib.import_module("matplotlib.pyplot")
    except Exception:  # noqa: BLE001
        pass


def train_into(config: ILConfig, dataset: Path, out: Path, console, started: float) -> dict:
    """Train, evaluate and write the run folder `out` (locked and empty)."""
    from rich.markup import escape
    from rich.table import Table

    if jax.default_backend() != "cpu":  # on the host's CPU these imports would only compete with the work
        threading.Thread(target=_import_late_modules, name="late-imports", daemon=True).start()

    datasets = [Path(dataset), *resolve_datasets(config.extra_datasets)]
    t0 = time.perf_counter()
    # a first read validates every row (seconds at a million steps): a spinner on a terminal, nothing in a log
    with console.status("reading the steps (a first read validates every row)"):
        table = load_union_table(datasets, config.unseen_tasks)
    load_s = time.perf_counter() - t0
    unseen = table.unseen_tasks
    # before embedding anything: fail fast on one-class or empty splits
    check_trainable(table, " + ".join(str(d) for d in datasets))
    for problem in shown_problems(table.report):  # escaped: a reported row value may look like rich markup
        console.print(f"[yellow]warning[/]: {escape(problem)}")
    spec = config.features
    t0 = time.perf_counter()
    features, num_new = build_features(table, spec, config.features_dir)
    featurize_s = time.perf_counter() - t0
    devices = jax.local_devices()
    mesh = data_mesh(devices) if config.data_parallel and len(devices) > 1 else None
    t0 = time.perf_counter()
    try:
        params, result, metrics, train_s = train_and_evaluate(table, features, config.train, dataset,
                                                              config.threshold, mesh, spec.device_signal_columns)
    except HeraError:  # already says what to do (e.g. training diverged to NaN)
        raise
    except ValueError as e:  # e.g. a batch size that does not divide over the devices
        raise HeraError(f"{e} (or pass --no-data-parallel)") from None
    trained_on = table.trained_on()
    by_dataset = (
        {t["env"]: split_metrics(table, features, config.train, params, config.threshold, table.source_mask(i))
         for i, t in enumerate(trained_on)}
        if len(datasets) > 1 else {}
    )
    evaluate_s = time.perf_counter() - t0 - train_s  # the split metrics after training

    agents = table.manifest.get("agents", {})
    stand_in = any(a.get("kind") == "stand-in" for a in agents.values())
    agents_title = manifest_agents_title(agents).removeprefix("agents: ")
    summary = {
        "dataset": str(dataset),
        "datasets": [str(d) for d in datasets],
        "envs": [t["env"] for t in trained_on],
        "trained_on": trained_on,
        "agents": agents,
        "agents_are_stand_ins": stand_in,
        "num_steps": len(table),
        "num_episodes": int(len(set(table.episode_id.tolist()))),
        "num_distinct_states": len(set(table.distinct_keys)),
        "newly_embedded_states": num_new,
        "devices": [str(d) for d in devices],
        "data_parallel_devices": mesh.size if mesh is not None else 1,
        "unseen_tasks": list(unseen),
        "best_epoch": int(result.best_epoch),
        "epochs_run": int(result.epochs_run),
        "metrics": metrics,
        "metrics_by_dataset": by_dataset,
        "threshold": config.threshold,
        "timings_s": {"load": load_s, "featurize": featurize_s, "train_incl_compile": train_s,
                      "evaluate": evaluate_s},
    }
    meta = {
        "il_summary": {k: summary[k] for k in ("dataset", "datasets", "agents", "agents_are_stand_ins", "metrics")},
        "trained_on": trained_on,
    }
    from hera_jax.router.checkpoint import CheckpointError, remove_settled, save_router

    t0 = time.perf_counter()
    try:
        save_router(out / "checkpoint", int(result.best_epoch), params, config.train, spec, meta)
    except CheckpointError:
        # nothing else is written before the checkpoint: with its unfinished folder gone the run folder is empty
        # again, so the advice "free space and rerun" works with the same --out
        remove_settled(lambda: [out / "checkpoint"] if (out / "checkpoint").exists() else [])
        raise
    summary["timings_s"]["checkpoint"] = time.perf_counter() - t0
    summary["timings_s"]["total"] = time.perf_counter() - started
    write_json_atomic(out / "metrics.json", summary)
    write_json_atomic(out / "config.json", config_json(config))
    plot_training_curve(result, out / "training_curve.png", f"IL router — {agents_title}")

    title = f"IL router on {' + '.join(Path(d).name for d in datasets)} — {agents_title}"
    rich_table = Table(title=title)
    # headers broken where they may be, so that the table fits 80 columns with no cell cut short
    columns = ("states", "needs\ncloud\nrate", "accuracy", "majority\naccuracy", "AUROC",
               f"cloud-step\nratio\n@{config.threshold:g}")
    if by_dataset:
        rich_table.add_column("dataset", overflow="fold")
    rich_table.add_column("split", no_wrap=True)
    for col in columns:
        rich_table.add_column(col, justify="right")
    sections = [("all", metrics)] + list(by_dataset.items()) if by_dataset else [(None, metrics)]
    for name, section in sections:
        for split, m in section.items():
            rich_table.add_row(
                *((name,) if name else ()), split, str(m["states"]), f"{m['positive_rate']:.3f}",
                f"{m['accuracy']:.3f}", f"{m['majority_accuracy']:.3f}", f"{m['auroc']:.3f}",
                f"{m['cloud_step_ratio']:.3f}",
            )
    console.print(rich_table)
    console.print(
        f"{summary['num_episodes']} episodes, {len(table)} steps, {summary['num_distinct_states']} distinct states "
        f"({num_new} newly embedded); best epoch {summary['best_epoch']} of {summary['epochs_run']}; "
        f"load {load_s:.1f}s, featurize {featurize_s:.1f}s, train {train_s:.1f}s (incl. compile), total {summary['timings_s']['total']:.1f}s"
    )
    console.print(f"wrote {out / 'metrics.json'}, {out / 'training_curve.png'} and {out / 'checkpoint'}")
    return summary

