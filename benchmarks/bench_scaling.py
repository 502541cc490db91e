"""Scaling over the GPUs of one host: data-parallel IL training and sweeps spread over the configurations.

For each device count k (the first k local devices; counts above what the host has are skipped):
- IL: `router/sharding.py`'s data-parallel trainer (batch rows split over k devices, parameters replicated) on
  --il-states synthetic states x --epochs epochs, at each --il-batch-sizes entry;
- sweeps: `hera_jax.sweep` with a `config_mesh` over k devices, for each --sweep-seeds entry (x 4 learning rates x
  4 widths: 16 seeds = 256 configurations) at --sweep-states.
Each row has compile and run seconds, states/s, its speed-up over k = 1 and its agreement with the k = 1 run
(largest parameter difference, dev AUROC). On one GPU it gives the k = 1 baselines.

    python benchmarks/bench_scaling.py                                     # every local device count in 1,2,4,8
    python benchmarks/bench_scaling.py --parts il --il-states 10M --devices 1
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import ROOT, EMBEDDING_DIM, SCALAR_DIM, Timer, environment, human, parse_sizes, print_table, write_json  # noqa: E402

from hera_jax.cli import run_cli  # noqa: E402
from hera_jax.router.sharding import config_mesh, data_mesh, make_sharded_train, pad_rows, shard_train_data  # noqa: E402
from hera_jax.router.train import TrainConfig, TrainData  # noqa: E402
from hera_jax.sweep import SweepGrid, jit_sweep, make_sweep  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BenchScalingConfig:
    """Time IL data parallelism and sharded sweeps on 1..k local devices."""

    parts: tuple[Literal["il", "sweep"], ...] = ("il", "sweep")
    devices: tuple[int, ...] = (1, 2, 4, 8)
    """Device counts to run (those above the local device count are skipped)."""
    epochs: int = 20
    il_states: str = "10M"
    il_batch_sizes: tuple[int, ...] = (256, 4096)
    """Global minibatch sizes of the IL runs (split over the devices)."""
    sweep_states: str = "1M"
    sweep_seeds: tuple[int, ...] = (4, 16)
    """Seeds per sweep grid (x 4 learning rates x 4 widths: 4 -> 64 configurations, 16 -> 256)."""
    positive_rate: float = 0.3
    out: Path = ROOT / "benchmarks" / "results" / "scaling.json"


def synthetic_on_device(num_states: int, positive_rate: float, seed: int = 0) -> TrainData:
    """Features of the real shape (unit-norm 384-d + step_frac) and labels of a noisy linear teacher, drawn on the
    default device (10M rows of host numpy would take minutes to draw and copy)."""
    num_dev = max(num_states // 10, 64)
    total = num_states + num_dev

    @jax.jit
    def draw(key):
        k_emb, k_frac, k_teacher, k_noise = jax.random.split(key, 4)
        emb = jax.random.normal(k_emb, (total, EMBEDDING_DIM), jnp.float32)
        emb = emb / jnp.linalg.norm(emb, axis=1, keepdims=True)
        x = jnp.concatenate([emb, jax.random.uniform(k_frac, (total, SCALAR_DIM))], axis=1)
        teacher = jax.random.normal(k_teacher, (EMBEDDING_DIM + SCALAR_DIM,))
        score = x @ teacher * np.sqrt(EMBEDDING_DIM) / 4 + jax.random.normal(k_noise, (total,))
        y = (score > jnp.sort(score)[int(total * (1.0 - positive_rate))]).astype(jnp.int32)
        return x, y

    x, y = draw(jax.random.key(seed))
    return TrainData(x[:num_states], y[:num_states], jnp.ones(num_states, jnp.float32), x[num_states:], y[num_states:])


def _timed(compiled_fn, *args):
    with Timer() as run_t:
        out = jax.block_until_ready(compiled_fn(*args))
    return out, run_t.seconds


def _max_diff(a, b) -> float:
    # on the host: the two results live on different device sets
    return max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _final_auroc(result) -> float:
    auroc = np.asarray(result.dev_auroc)
    return float(np.nanmax(auroc.reshape(-1, auroc.shape[-1])[:, -1]))


def run_il(cfg: BenchScalingConfig, counts: list[int]) -> list[dict]:
    rows = []
    for n in parse_sizes(cfg.il_states):
        base_data = synthetic_on_device(n, cfg.positive_rate)
        for batch in cfg.il_batch_sizes:
            config = TrainConfig(batch_size=batch, max_epochs=cfg.epochs, patience=cfg.epochs + 1)
            reference = None
            for k in counts:
                mesh = data_mesh(jax.local_devices()[:k])
                data = shard_train_data(pad_rows(base_data, k), mesh)
                num_train = data.x_train.shape[0]
                train = make_sharded_train(config, num_train, mesh)
                rng = jax.random.key(0)
                with Timer() as compile_t:
                    compiled = train.lower(rng, data).compile()
                result, run_s = _timed(compiled, rng, data)
                row = {"part": "il", "devices": k, "states": n, "batch_size": batch, "epochs": cfg.epochs,
                       "compile_s": compile_t.seconds, "run_s": run_s,
                       "states_per_s": n * cfg.epochs / run_s, "final_dev_auroc": _final_auroc(result)}
                if reference is None:
                    reference = (row, result.params)
                row["speedup_incl_compile"] = ((reference[0]["compile_s"] + reference[0]["run_s"])
                                               / (row["compile_s"] + row["run_s"]))
                row["speedup_run"] = reference[0]["run_s"] / row["run_s"]
                row["max_param_diff_vs_1"] = _max_diff(result.params, reference[1])
                rows.append(row)
                print(row, flush=True)
                del data, result
        del base_data
    return rows


def run_sweeps(cfg: BenchScalingConfig, counts: list[int]) -> list[dict]:
    rows = []
    base = TrainConfig(max_epochs=cfg.epochs, patience=cfg.epochs + 1)
    for n in parse_sizes(cfg.sweep_states):
        data = synthetic_on_device(n, cfg.positive_rate)
        for num_seeds in cfg.sweep_seeds:
            grid = SweepGrid(seeds=tuple(range(num_seeds)))
            reference = None
            for k in counts:
                mesh = None if k == 1 else config_mesh(jax.local_devices()[:k])
                sweep = jit_sweep(make_sweep(base, grid, n, mesh=mesh))
                with Timer() as compile_t:
                    compiled = sweep.lower(data).compile()
                (result, _), run_s = _timed(compiled, data)
                configs = int(result.best_epoch.shape[0])
                row = {"part": "sweep", "devices": k, "states": n, "configs": configs, "epochs": cfg.epochs,
                       "compile_s": compile_t.seconds, "run_s": run_s,
                       "states_per_s": n * cfg.epochs * configs / run_s, "final_dev_auroc": _final_auroc(result)}
                if reference is None:
                    reference = (row, result.params)
                row["speedup_incl_compile"] = ((reference[0]["compile_s"] + reference[0]["run_s"])
                                               / (row["compile_s"] + row["run_s"]))
                row["speedup_run"] = reference[0]["run_s"] / row["run_s"]
                row["max_param_diff_vs_1"] = _max_diff(result.params, reference[1])
                rows.append(row)
                print(row, flush=True)
                del result
        del data
    return rows


def main(cfg: BenchScalingConfig) -> dict:
    local = len(jax.local_devices())
    counts = sorted({k for k in cfg.devices if k <= local})
    if not counts:
        raise SystemExit(f"none of --devices {list(cfg.devices)} fits the {local} local device(s)")
    rows = []
    if "il" in cfg.parts:
        rows += run_il(cfg, counts)
        write_json(cfg.out, {"benchmark": "scaling", "partial": True, "rows": rows})
    if "sweep" in cfg.parts:
        rows += run_sweeps(cfg, counts)
    env = environment()
    payload = {"benchmark": "scaling", "config": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in dataclasses.asdict(cfg).items()},
               "environment": env, "local_devices": local, "rows": rows}
    write_json(cfg.out, payload)
    print_table(
        f"Scaling over {local} local device(s), {cfg.epochs} epochs, on {env['jax_devices'][0]} ({env['date'][:10]})",
        ["part", "devices", "states", "batch / configs", "compile s", "run s", "states/s", "x 1 device (incl. compile)",
         "x 1 device (run)", "max param diff vs 1", "final dev AUROC"],
        [[r["part"], str(r["devices"]), human(r["states"]), str(r.get("batch_size", r.get("configs"))),
          r["compile_s"], r["run_s"], r["states_per_s"], r["speedup_incl_compile"], r["speedup_run"],
          r["max_param_diff_vs_1"], r["final_dev_auroc"]] for r in rows],
    )
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchScalingConfig)
