"""The router sweep as one run (experiments/sweep.py is its command line): seeds x learning rates x hidden widths
x label sources trained as ONE compiled program.

Loads a collected dataset and its features cache, trains every configuration of the grid inside one `jax.vmap` of
the ordinary trainer (widths zero-padded to the widest, narrow ones packed side by side; see hera_jax.sweep), and writes a tidy table (sweep.csv, one
row per configuration), sweep.json and sweep.png into a new run folder. With several local devices the
configurations are spread over them.

With the rollouts of an RL run, every configuration trains on the same rows (the run's RL visits, then the IL
training states) with its own targets and weights, and a share of the RL state groups (--heldout-groups-percent) is
kept out of training to score each configuration on RL labels: how often it routes a held-out state the way the
grouped preference says, and the cloud-step ratio that costs. Those scoring labels use one fixed cost weight
(--score-cost-weight) for every configuration, like a fixed test set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from hera_jax.dataset import StepTable, check_trainable, load_il_table, manifest_agents_title
from hera_jax.errors import ComputationAbandoned, HeraError
from hera_jax.features import FeatureSpec, featurize
from hera_jax.rl.config import stored_preference
from hera_jax.rl.run import FEATURES, load_run_visits
from hera_jax.rl.visits import grouped_visits, groups_of_keys, heldout_groups
from hera_jax.files import write_json_atomic
from hera_jax.router.il import build_features, il_train_data
from hera_jax.router.sharding import config_mesh
from hera_jax.sweep import (
    RLRows, SweepGrid, grid_packing, grid_points, jit_sweep, make_sweep, plot_sweep, sweep_compiler_options,
    sweep_table,
)
from hera_jax.router.train import TrainConfig, TrainData
from hera_jax.runs import RUNS_ROOT, config_json, locked_run_dir, new_run_dir, require_empty
from hera_jax.sweep_config import SweepConfig  # noqa: F401  (re-exported)


T = TypeVar("T")


def rl_train_data(table: StepTable, features: np.ndarray, run_dir: Path, spec: FeatureSpec, percent: int):
    """(TrainData with the RL visits before the IL training rows, RLRows, settings of the RL run, stats)."""
    settings, visits = load_run_visits(run_dir)
    dataset_env = table.manifest.get("env", {}).get("name")
    if settings.get("env") != dataset_env:
        raise HeraError(f"{run_dir}/config.json: env {settings.get('env')!r} differs from the dataset's "
                        f"{dataset_env!r}; give an RL run of the same environment")
    # the return and estimate the run's own preferences used
    preference = stored_preference(settings)
    visits, gid, keys, returns, future_calls = grouped_visits(visits, preference.return_kind, preference.return_estimate)
    x_visits, _ = featurize(visits.state_key, visits.state_text, visits.step, spec, run_dir / FEATURES)
    train = table.mask("train")
    il_group = groups_of_keys([k for k, m in zip(table.state_key, train) if m], keys)
    if not 0 < percent < 100:
        raise HeraError(f"--heldout-groups-percent must be between 1 and 99, got {percent}")
    heldout = heldout_groups(keys, percent)
    il = il_train_data(table, features)
    data = il._replace(  # rows [RL visits; IL states], the order of rl/loss.py's preference_rows
        x_train=jnp.concatenate([jnp.asarray(x_visits), il.x_train]),
        y_train=jnp.concatenate([jnp.zeros(len(visits), jnp.int32), il.y_train]),
        w_train=jnp.ones(int(train.sum()) + len(visits), jnp.float32),  # replaced per configuration
    )
    rl = RLRows(jnp.asarray(gid), jnp.asarray(visits.chose_cloud), jnp.asarray(returns, jnp.float32),
                jnp.asarray(future_calls, jnp.float32), jnp.asarray(il_group), jnp.asarray(heldout))
    stats = {"rl_run": str(run_dir), "visits": len(visits), "groups": len(keys),
             "heldout_groups": int(heldout.sum()), "il_train_rows": int(train.sum()),
             "il_rows_in_heldout_groups": int(sum(g >= 0 and heldout[g] for g in il_group))}
    return data, rl, settings, stats


def run_sweep(data: TrainData, base: TrainConfig, grid: SweepGrid, rl: RLRows | None = None, mesh=None,
              il_weight: float = 1.0, score_cost_weight: float = 0.02,
              say: Callable[[str], None] = lambda message: None,
              wait: Callable[[Callable[[], T], str], T] = lambda work, what: work(),
              ) -> tuple[list[dict], object, dict]:
    """Compile once, train the whole grid; returns (tidy rows, stacked TrainResult, timings in seconds).
    `say` gets a line before the compile and before the training (they take minutes on a CPU); `wait(work, what)`
    runs each of the two (see `waiting_on`)."""
    num_train = int(data.x_train.shape[0])
    sweep = make_sweep(base, grid, num_train, mesh=mesh, il_weight=il_weight, score_cost_weight=score_cost_weight)
    networks = grid_packing(grid).num_slots
    say(f"compiling the sweep: one program for the whole grid ({len(grid_points(grid).seed)} configurations in "
        f"{networks} networks), {num_train} training rows ...")
    t0 = time.perf_counter()
    compiled = wait(lambda: jit_sweep(sweep).lower(data, rl).compile(), "compiling")
    t1 = time.perf_counter()
    say(f"compiled in {t1 - t0:.1f}s; training every configuration (up to {base.max_epochs} epochs) ...")
    result, scores = wait(lambda: jax.block_until_ready(compiled(data, rl)), "training")
    t2 = time.perf_counter()
    return sweep_table(grid, result, scores), result, {"compile": t1 - t0, "run": t2 - t1}


def waiting_on(console, plain_every_s: float = 30.0) -> Callable[[Callable[[], T], str], T]:
    """A `wait` for run_sweep: the work runs in a daemon thread while the main thread waits in short sleeps, so a
    Ctrl-C is taken at once (a compile or a compiled program returns to Python only when done, minutes on a CPU)
    and ends the command (ComputationAbandoned); the wait shows its elapsed time: a spinner on a terminal, a plain
    line every `plain_every_s` in a log file."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    def wait(work: Callable[[], T], what: str) -> T:
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["value"] = work()
            except BaseException as e:  # handed to the main thread, raised there
                outcome["error"] = e

        worker = threading.Thread(target=run, name=f"sweep {what}", daemon=True)
        started = last_line = time.monotonic()
        worker.start()
        try:
            with Progress(SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=console, transient=True,
                          disable=not console.is_terminal) as progress:
                progress.add_task(what, total=None)
                while worker.is_alive():
                    worker.join(0.2)
                    now = time.monotonic()
                    if not console.is_terminal and now - last_line >= plain_every_s:
                        last_line = now
                        console.print(f"{what}: {now - started:.0f}s so far")
        except KeyboardInterrupt:
            raise ComputationAbandoned() from None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return wait


def sweep_experiment(config: SweepConfig) -> dict:
    """Run the sweep into a new run folder; returns what sweep.json holds."""
    from rich.console import Console

    console = Console()
    dataset = config.dataset_dir()
    out = config.out or new_run_dir(RUNS_ROOT, "sweep")
    with locked_run_dir(out, "sweep.py run"):
        require_empty(out)
        return sweep_into(config, Path(dataset), out, console)


def sweep_into(config: SweepConfig, dataset: Path, out: Path, console) -> dict:
    """Train the grid and write the run folder `out` (locked and empty)."""
    import pandas as pd
    from rich.table import Table

    console.print(f"sweep -> {out}: loading {dataset} and its features ...")
    table = load_il_table(dataset, config.unseen_tasks)  # None: the default of the dataset's own environment
    check_trainable(table, dataset)
    spec = config.features
    features, num_new = build_features(table, spec, config.features_path())
    rl, rl_stats, score_cost_weight = None, None, config.score_cost_weight
    if config.rl_run is not None:
        data, rl, rl_settings, rl_stats = rl_train_data(table, features, config.rl_run, spec,
                                                        config.heldout_groups_percent)
        if score_cost_weight is None:
            score_cost_weight = float(stored_preference(rl_settings).cost_weight)
        rl_stats["score_cost_weight"] = score_cost_weight
    else:
        data = il_train_data(table, features)
    devices = jax.local_devices()
    mesh = config_mesh(devices) if config.spread_configs and len(devices) > 1 else None
    try:
        rows, result, seconds = run_sweep(data, config.train, config.grid, rl, mesh, config.il_weight,
                                          score_cost_weight if score_cost_weight is not None else 0.0,
                                          say=console.print, wait=waiting_on(console))
    except ValueError as e:  # e.g. widths of different depth, unknown label source
        raise HeraError(str(e)) from None

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "sweep.csv", index=False)
    agents = table.manifest.get("agents", {})
    agents_title = manifest_agents_title(agents)  # the labels come from these agents; stand-ins say so
    plot_sweep(rows, out / "sweep.png", title=f"Router sweep on {Path(dataset).name}\n{agents_title}")
    summary = {"dataset": str(dataset), "agents": agents, "agents_title": agents_title,
               "agents_are_stand_ins": any(a.get("kind") == "stand-in" for a in agents.values()),
               "num_configs": len(rows), "networks": grid_packing(config.grid).num_slots,
               "newly_embedded_states": num_new,
               "timings_s": seconds, "devices": [str(d) for d in devices],
               "compiler_options": sweep_compiler_options(),
               "configs_spread_over_devices": mesh is not None, "rl": rl_stats, "rows": rows}
    write_json_atomic(out / "sweep.json", summary)
    write_json_atomic(out / "config.json", config_json(config))

    keys = ["labels", "hidden_sizes", "learning_rate"]
    metrics = ["best_dev_auroc"] + (["heldout_rl_agreement", "heldout_cloud_ratio"] if rl is not None else [])
    grouped = frame.groupby(keys, sort=False)[metrics].agg(["mean", "std"])
    rich_table = Table(title=f"{len(rows)}-config sweep on {Path(dataset).name}: mean (std) over "
                             f"{frame['seed'].nunique()} seeds; {agents_title}"
                             + (f"; held-out RL labels at cost weight {score_cost_weight:g}" if rl is not None else ""))
    for col in ("labels", "hidden sizes", "learning rate", *metrics):
        rich_table.add_column(col.replace("_", " "), justify="right")
    for (labels, hidden, lr), stats in grouped.iterrows():
        rich_table.add_row(labels, hidden, f"{lr:g}",
                           *[f"{stats[(m, 'mean')]:.4f} ({stats[(m, 'std')]:.4f})" for m in metrics])
    console.print(rich_table)
    best = frame.loc[frame["best_dev_auroc"].idxmax()]
    console.print(f"best dev AUROC: {best['labels']}, hidden {best['hidden_sizes']}, lr {best['learning_rate']:g}, "
                  f"seed {best['seed']} -> {best['best_dev_auroc']:.4f}; compile {seconds['compile']:.1f}s, "
                  f"run {seconds['run']:.1f}s on {len(devices)} device(s)"
                  + (", configurations spread over them" if mesh is not None else ""))
    console.print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.png'}, {out / 'sweep.json'}")
    return summary

