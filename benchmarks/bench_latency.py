"""Router decision latency inside the agent loop, on the CPU: the jitted forward for ONE state, called the way
the per-state path called it (numpy features in, a Python float out), p50 / p99 over many calls. Embedding
one state text with sentence-transformers is timed separately (it dominates and is cached per distinct state).

    python benchmarks/bench_latency.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import EMBEDDING_DIM, ROOT, SCALAR_DIM, Timer, environment, print_table, write_json

from hera_jax.cli import run_cli
from hera_jax.router.model import RouterMLP


@dataclasses.dataclass(frozen=True)
class BenchLatencyConfig:
    """Time one routing decision (router forward; embedding apart) on the CPU."""

    hidden_sizes: tuple[int, ...] = (256, 128)
    forward_calls: int = 5000
    embed_calls: int = 30
    """One-state embeddings to time (0 skips the encoder)."""
    out: Path = ROOT / "benchmarks" / "results" / "latency_cpu.json"


def percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "calls": len(ms)}


def main(cfg: BenchLatencyConfig) -> dict:
    cpu = jax.devices("cpu")[0]
    model = RouterMLP(cfg.hidden_sizes)
    dim = EMBEDDING_DIM + SCALAR_DIM
    with jax.default_device(cpu):
        params = model.init(jax.random.key(0), jnp.zeros((1, dim)))["params"]
        forward = jax.jit(lambda p, x: jax.nn.sigmoid(model.apply({"params": p}, x)))
        states = np.random.default_rng(0).normal(size=(cfg.forward_calls, 1, dim)).astype(np.float32)
        float(np.asarray(forward(params, jnp.asarray(states[0])))[0])  # compile
        times = []
        for x in states:
            with Timer() as t:
                float(np.asarray(forward(params, jnp.asarray(x)))[0])
            times.append(t.seconds)
    rows = [{"what": "router forward, 1 state (jit, numpy in, float out)", **percentiles_ms(times)}]
    if cfg.embed_calls:
        from hera_jax.features import sentence_encode_fn

        encode = sentence_encode_fn(show_progress=False)
        encode(["warm-up"])
        texts = [f"Task: boil water\nNow: you are in the kitchen, step {i}. You see a stove and a pot."
                 for i in range(cfg.embed_calls)]
        times = []
        for text in texts:
            with Timer() as t:
                encode([text])
            times.append(t.seconds)
        rows.append({"what": "embed 1 state text (all-MiniLM-L6-v2, CPU)", **percentiles_ms(times)})
    env = environment()
    payload = {"benchmark": "router_latency_cpu", "config": dataclasses.asdict(cfg) | {"out": str(cfg.out)},
               "environment": env, "rows": rows}
    write_json(cfg.out, payload)
    print_table(f"Routing decision latency on the CPU ({env['date'][:10]}, {env['cpu_count']} cores)",
                ["what", "calls", "p50 ms", "p99 ms", "mean ms"],
                [[r["what"], str(r["calls"]), r["p50_ms"], r["p99_ms"], r["mean_ms"]] for r in rows])
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchLatencyConfig)
