"""Sweep cost: one router training run vs the whole grid (default 4 seeds x 4 learning rates x 4 widths = 64
configurations) as one vmapped, jit-compiled program (hera_jax.sweep). Target on a GPU: <= 3x one run.

    python benchmarks/bench_sweep.py --states 100k
    python benchmarks/bench_sweep.py --states 100k --grid.seeds 0 1 --grid.learning-rates 1e-3 3e-3 \\
        --grid.label-sources il il+rl --grid.cost-weights 0 0.01 0.02 0.05 0.1 0.2 0.5   # 64 configs with labels

With 'il+rl' among the label sources, synthetic RL visits (--rl-visit-fraction of the states, ~4 visits per state
group, a quarter of the groups held out) are appended to the training rows and every configuration computes its own
labels in the program, as experiments/sweep.py --rl-run does.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
    ROOT, Timer, environment, human, parse_sizes, print_table, shipped_positive_rate, synthetic_router_data,
    train_data_on_device, write_json,
)

from hera_jax.cli import run_cli  # noqa: E402
from hera_jax.sweep import (  # noqa: E402
    RLRows, SweepGrid, grid_points, jit_sweep, make_sweep, sweep_compiler_options,
)
from hera_jax.router.train import TrainConfig, make_train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BenchSweepConfig:
    """Time one training run against a vmapped sweep of many."""

    states: str = "10k"
    """Training-set sizes, comma separated (k / M suffixes)."""
    epochs: int = 20
    grid: SweepGrid = SweepGrid()
    single: TrainConfig = TrainConfig(hidden_sizes=(256, 128), learning_rate=1e-3)
    """The one run the sweep is compared with (the grid's widest, default model)."""
    rl_visit_fraction: float = 0.2
    """With label source 'il+rl': synthetic RL visits per training state."""
    pack: bool = True
    """Pack configurations that differ only in width into one network (hera_jax/sweep_packing.py); --no-pack gives
    every configuration a zero-padded network of its own."""
    compiler_options: bool = True
    """Compile the sweep as every caller does (hera_jax.sweep.jit_sweep: cuBLAS GEMMs on a GPU);
    --no-compiler-options compiles it with XLA's defaults, like the one run."""
    warm_up: bool = True
    """Compile and run a tiny training program first, so that neither timed compile pays the process's one-time
    compiler set-up; --no-warm-up leaves it to the one run, which is compiled first (the sweep then does not pay
    it)."""
    matmul_precision: str | None = None
    """jax_default_matmul_precision for both sides ('float32', 'tensorfloat32', ...); None = JAX's default."""
    out: Path = ROOT / "benchmarks" / "results" / "sweep.json"


def synthetic_rl_rows(num_states: int, fraction: float, seed: int = 1):
    """(x_visits, RLRows): visits of ~4 per group, half routed to the cloud, returns and calls drawn at random."""
    rng = np.random.default_rng(seed)
    num_visits = max(int(num_states * fraction), 8)
    num_groups = max(num_visits // 4, 2)
    x_visits, _, _, _ = synthetic_router_data(num_visits, 0.4, seed=seed)
    group = rng.integers(0, num_groups, num_visits).astype(np.int32)
    rows = RLRows(
        group=jnp.asarray(group), chose_cloud=jnp.asarray(rng.random(num_visits) < 0.5),
        returns=jnp.asarray(rng.random(num_visits, dtype=np.float32)),
        future_calls=jnp.asarray(rng.integers(0, 20, num_visits).astype(np.float32)),
        il_group=jnp.asarray(np.where(rng.random(num_states) < 0.05, rng.integers(0, num_groups, num_states), -1)
                             .astype(np.int32)),
        heldout=jnp.asarray(np.arange(num_groups) % 4 == 0),
    )
    return x_visits, rows


def _time(jitted, *args) -> tuple[float, float]:
    with Timer() as compile_t:
        compiled = jitted.lower(*args).compile()
    jax.block_until_ready(compiled(*args))  # first run (allocations), not counted as steady state
    with Timer() as run_t:
        jax.block_until_ready(compiled(*args))
    return compile_t.seconds, run_t.seconds


def warm_up() -> None:
    """A 64-state, one-epoch training run: the process's first compile (GEMMs, sort, scan), not timed."""
    x, y, x_dev, y_dev = synthetic_router_data(64, 0.4)
    tiny = TrainConfig(hidden_sizes=(16, 8), max_epochs=1, batch_size=16)
    jax.block_until_ready(jax.jit(make_train(tiny, 64))(jax.random.key(0), train_data_on_device(x, y, x_dev, y_dev)))


def main(cfg: BenchSweepConfig) -> dict:
    if cfg.matmul_precision:
        jax.config.update("jax_default_matmul_precision", cfg.matmul_precision)
    if cfg.warm_up:
        warm_up()
    positive_rate = shipped_positive_rate()
    num_configs = len(grid_points(cfg.grid).seed)
    rows = []
    for n in parse_sizes(cfg.states):
        x, y, x_dev, y_dev = synthetic_router_data(n, positive_rate)
        data = train_data_on_device(x, y, x_dev, y_dev)
        # patience > epochs: every configuration runs all epochs, so the two sides do comparable work
        single = dataclasses.replace(cfg.single, max_epochs=cfg.epochs, patience=cfg.epochs + 1)
        one_compile, one_run = _time(jax.jit(make_train(single, n)), jax.random.key(0), data)
        if "il+rl" in cfg.grid.label_sources:
            x_visits, rl = synthetic_rl_rows(n, cfg.rl_visit_fraction)
            sweep_data = data._replace(
                x_train=jnp.concatenate([jnp.asarray(x_visits), data.x_train]),  # rows [RL visits; IL states]
                y_train=jnp.concatenate([jnp.zeros(len(x_visits), jnp.int32), data.y_train]),
                w_train=jnp.ones(n + len(x_visits), jnp.float32))
            num_rows = n + len(x_visits)
        else:
            sweep_data, rl, num_rows = data, None, n
        sweep = make_sweep(single, cfg.grid, num_rows, pack=cfg.pack)
        sweep_compile, sweep_run = _time(jit_sweep(sweep) if cfg.compiler_options else jax.jit(sweep),
                                         sweep_data, rl)
        rows.append({
            "states": n, "configs": num_configs, "packed": cfg.pack,
            "sweep_compiler_options": sweep_compiler_options() if cfg.compiler_options else None,
            "warmed_up": cfg.warm_up,
            "label_sources": list(cfg.grid.label_sources),
            "sweep_rows": num_rows,
            "one_compile_s": one_compile, "one_run_s": one_run,
            "sweep_compile_s": sweep_compile, "sweep_run_s": sweep_run,
            "ratio_steady": sweep_run / one_run,
            "ratio_incl_compile": (sweep_compile + sweep_run) / (one_compile + one_run),
        })
        print(rows[-1], flush=True)
        write_json(cfg.out, {"benchmark": "sweep", "partial": True, "rows": rows})
    env = environment()
    payload = {"benchmark": "sweep", "config": json_safe(dataclasses.asdict(cfg)), "environment": env, "rows": rows}
    write_json(cfg.out, payload)
    print_table(
        f"{num_configs}-config sweep vs one run, {cfg.epochs} epochs, on {env['jax_devices'][0]} ({env['date'][:10]})",
        ["states", "configs", "one: compile s", "one: run s", "sweep: compile s", "sweep: run s",
         "sweep / one (run)", "sweep / one (incl. compile)"],
        [[human(r["states"]), str(r["configs"]), r["one_compile_s"], r["one_run_s"], r["sweep_compile_s"],
          r["sweep_run_s"], r["ratio_steady"], r["ratio_incl_compile"]] for r in rows],
    )
    print(f"wrote {cfg.out}")
    return payload


def json_safe(value):
    return {k: json_safe(v) for k, v in value.items()} if isinstance(value, dict) else (
        str(value) if isinstance(value, Path) else value)


if __name__ == "__main__":
    run_cli(main, BenchSweepConfig)
