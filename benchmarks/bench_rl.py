"""RL stage: grouped preference labels + grouped-preference loss, hera_jax (segment sums, jitted) vs a plain
Python/numpy loop over groups (the reference, also used to check the jitted result).

Synthetic visits: ~4 visits per group of identical states, 30% routed to the cloud, returns and future cloud calls
at random, plus one IL-only row per four visits (the loss's IL term).

    python benchmarks/bench_rl.py --sizes 10k,100k,1M
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import ROOT, Timer, environment, human, parse_sizes, print_table, write_json  # noqa: E402

from hera_jax.cli import run_cli  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BenchRLConfig:
    """Time grouped RL labels + loss (hera_jax vs a Python loop over groups)."""

    sizes: str = "10k,100k"
    """Numbers of visits, comma separated; k and M suffixes allowed."""
    visits_per_group: float = 4.0
    cost_weight: float = 0.1
    il_weight: float = 0.5
    repeats: int = 20
    """Timed calls of the jitted function (the median is reported)."""
    python_max_visits: int = 1_000_000
    """Skip the Python loop above this many visits (it is the slow side)."""
    out: Path = ROOT / "benchmarks" / "results" / "rl.json"


def synthetic_visits(num_visits: int, visits_per_group: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    num_groups = max(int(num_visits / visits_per_group), 1)
    num_il = num_visits // 4
    return {
        "num_groups": num_groups,
        "group_ids": rng.integers(0, num_groups, num_visits).astype(np.int32),
        "chose_cloud": rng.random(num_visits) < 0.3,
        "returns": rng.normal(size=num_visits).astype(np.float32),
        "future_cloud_calls": rng.poisson(3.0, num_visits).astype(np.float32),
        # loss rows: the visits, then IL-only rows that belong to no group
        "logits": rng.normal(size=num_visits + num_il).astype(np.float32),
        "il_label": (rng.random(num_visits + num_il) < 0.3).astype(np.int32),
        "num_il": num_il,
    }


def bce(logits: np.ndarray, target: float) -> np.ndarray:
    return np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))


def python_reference(v: dict, cost_weight: float, il_weight: float):
    """Labels, margins, validity and the loss with a loop over groups (what one writes without segment ops)."""
    num_groups, num_visits = v["num_groups"], len(v["group_ids"])
    order = np.argsort(v["group_ids"], kind="stable")
    starts = np.searchsorted(v["group_ids"][order], np.arange(num_groups + 1))
    label = np.zeros(num_groups, np.int8)
    margin = np.zeros(num_groups, np.float32)
    valid = np.zeros(num_groups, bool)
    for g in range(num_groups):
        idx = order[starts[g]:starts[g + 1]]
        cloud = v["chose_cloud"][idx]
        if cloud.all() or not cloud.any():
            continue
        score = {}
        for choice, mask in (("cloud", cloud), ("device", ~cloud)):
            score[choice] = v["returns"][idx][mask].mean() - cost_weight * v["future_cloud_calls"][idx][mask].mean()
        valid[g] = True
        label[g] = score["cloud"] > score["device"]
        margin[g] = abs(score["cloud"] - score["device"])
    total_margin = margin[valid].sum()
    loss = 0.0
    for g in range(num_groups):
        if valid[g] and total_margin > 0:
            idx = order[starts[g]:starts[g + 1]]
            loss += margin[g] / total_margin * bce(v["logits"][idx], float(label[g])).mean()
    il_logits = v["logits"][num_visits:]
    if len(il_logits):
        loss += il_weight * bce(il_logits, v["il_label"][num_visits:].astype(np.float32)).mean()
    return label, margin, valid, float(loss)


def make_jax_fn(num_groups: int, num_visits: int, num_il: int):
    from hera_jax.rl.loss import PreferenceRows, grouped_preference_loss
    from hera_jax.rl.preferences import group_preferences

    def labels_and_loss(group_ids, chose_cloud, returns, future_calls, logits, il_label, cost_weight, il_weight):
        preferences = group_preferences(group_ids, chose_cloud, returns, future_calls, num_groups, cost_weight)
        rows = PreferenceRows(
            group=jnp.concatenate([group_ids, jnp.full(num_il, -1, jnp.int32)]),
            is_visit=jnp.arange(num_visits + num_il) < num_visits,
            il_label=il_label,
            il_known=jnp.arange(num_visits + num_il) >= num_visits,
        )
        loss = grouped_preference_loss(logits, rows, preferences, il_weight)
        return (*preferences, loss)

    return jax.jit(labels_and_loss)


def main(cfg: BenchRLConfig) -> dict:
    rows = []
    for n in parse_sizes(cfg.sizes):
        v = synthetic_visits(n, cfg.visits_per_group)
        args = [jnp.asarray(v[k]) for k in ("group_ids", "chose_cloud", "returns", "future_cloud_calls", "logits",
                                            "il_label")]
        args = jax.device_put(args) + [jnp.float32(cfg.cost_weight), jnp.float32(cfg.il_weight)]
        row = {"visits": n, "groups": v["num_groups"]}
        try:
            fn = make_jax_fn(v["num_groups"], n, v["num_il"])
            with Timer() as compile_t:
                compiled = fn.lower(*args).compile()
            jax.block_until_ready(compiled(*args))
            times = []
            for _ in range(cfg.repeats):
                with Timer() as t:
                    out = jax.block_until_ready(compiled(*args))
                times.append(t.seconds)
            row |= {"jax_compile_s": compile_t.seconds, "jax_s": float(np.median(times)), "error": None}
        except Exception as e:  # the RL module missing or its API changed: record, keep the table
            row |= {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            out = None
        if n <= cfg.python_max_visits:
            with Timer() as py_t:
                ref = python_reference(v, cfg.cost_weight, cfg.il_weight)
            row["python_s"] = py_t.seconds
            if out is not None:
                row["speedup"] = row["python_s"] / row["jax_s"]
                row["labels_agree"] = bool(np.array_equal(np.asarray(out[0]), ref[0])
                                           and np.array_equal(np.asarray(out[2]), ref[2]))
                row["max_margin_diff"] = float(np.max(np.abs(np.asarray(out[1]) - ref[1])))
                row["loss_rel_diff"] = abs(float(out[3]) - ref[3]) / max(abs(ref[3]), 1e-12)
        rows.append(row)
        print(row, flush=True)
        write_json(cfg.out, {"benchmark": "rl_grouped_labels_and_loss", "partial": True, "rows": rows})
    env = environment()
    payload = {"benchmark": "rl_grouped_labels_and_loss", "config": dataclasses.asdict(cfg) | {"out": str(cfg.out)},
               "environment": env, "rows": rows}
    write_json(cfg.out, payload)
    print_table(
        f"RL grouped labels + loss on {env['jax_devices'][0]} vs a Python loop on the host CPU ({env['date'][:10]})",
        ["visits", "groups", "jax compile s", "jax s (median)", "python loop s", "speed-up", "labels agree",
         "loss rel. diff", "note"],
        [[human(r["visits"]), str(r["groups"]), r.get("jax_compile_s"), r.get("jax_s"), r.get("python_s"),
          r.get("speedup"), str(r.get("labels_agree", "-")), r.get("loss_rel_diff"), r["error"] or ""]
         for r in rows],
    )
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchRLConfig)
