"""Where a training step's GPU time goes: one router run vs the 64-configuration sweep, under `jax.profiler`,
with kernel time summed per kernel name (RESULTS.md, "where a sweep step's GPU time goes").

    python benchmarks/profile_sweep.py --states 100000
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
from common import shipped_positive_rate, synthetic_router_data, train_data_on_device  # noqa: E402

from hera_jax.cli import run_cli  # noqa: E402
from hera_jax.router.train import TrainConfig, make_train  # noqa: E402
from hera_jax.sweep import SweepGrid, jit_sweep, make_sweep  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ProfileSweepConfig:
    """Profile one run and the sweep (each compiled and run once before the traced run)."""

    states: int = 100_000
    epochs: int = 20
    top: int = 25
    """Kernels listed per program, by total time."""


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """(total ns, launches) per kernel name over the GPU planes of the trace in `trace_dir`."""
    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    total, launches = collections.Counter(), collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        if plane.name.startswith("/device:GPU"):
            for line in plane.lines:
                for event in line.events:
                    total[event.name] += event.duration_ns
                    launches[event.name] += 1
    return total, launches


def main(cfg: ProfileSweepConfig) -> None:
    n = cfg.states
    x, y, x_dev, y_dev = synthetic_router_data(n, shipped_positive_rate())
    data = train_data_on_device(x, y, x_dev, y_dev)
    single = TrainConfig(hidden_sizes=(256, 128), learning_rate=1e-3, max_epochs=cfg.epochs, patience=cfg.epochs + 1)
    steps = cfg.epochs * (n // single.batch_size)
    for name, jitted, args in (("one run", jax.jit(make_train(single, n)), (jax.random.key(0), data)),
                               ("sweep", jit_sweep(make_sweep(single, SweepGrid(), n)), (data,))):
        compiled = jitted.lower(*args).compile()
        jax.block_until_ready(compiled(*args))
        with tempfile.TemporaryDirectory() as trace_dir:
            start = time.perf_counter()
            with jax.profiler.trace(trace_dir):
                jax.block_until_ready(compiled(*args))
            wall = time.perf_counter() - start
            total, launches = kernel_times(trace_dir)
        busy = sum(total.values())
        print(f"== {name}: {wall:.2f} s wall under the trace, GPU busy {busy / 1e9:.3f} s "
              f"({busy / 1e3 / max(steps, 1):.1f} us a step over {steps} steps)")
        for kernel, ns in total.most_common(cfg.top):
            print(f"  {ns / 1e9:8.3f} s {ns / 1e3 / max(steps, 1):8.2f} us/step {launches[kernel]:8d}x  {kernel[:100]}")


if __name__ == "__main__":
    run_cli(main, ProfileSweepConfig)
