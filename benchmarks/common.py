"""Shared pieces of the benchmark scripts: synthetic router data of the real shape, timing, environment, output.

Benchmarks are run on demand (`just bench`, or each script alone); they print a rich table and write JSON. They are
not tests: nothing here asserts a time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DATASET = ROOT / "data" / "scienceworld_standin"
EMBEDDING_DIM = 384  # all-MiniLM-L6-v2
SCALAR_DIM = 1  # step_frac
FALLBACK_POSITIVE_RATE = 0.25


def shipped_positive_rate(dataset: Path = SHIPPED_DATASET) -> float:
    """The IL 'needs cloud' rate of the shipped dataset's train split (the real label balance), or a fallback."""
    try:
        from hera_jax.dataset import load_il_table
        from hera_jax.envs.profiles import profile

        table = load_il_table(dataset, profile("scienceworld").unseen_tasks)
        labels = table.label[table.mask("train")]
        return float(labels.mean()) if labels.size else FALLBACK_POSITIVE_RATE
    except Exception:  # a missing or half-collected dataset must not stop a benchmark
        return FALLBACK_POSITIVE_RATE


def synthetic_router_data(num_states: int, positive_rate: float, seed: int = 0, dev_fraction: float = 0.1):
    """Features like the real ones (unit-norm 384-d embedding + step_frac in [0, 1]) and labels from a noisy linear
    teacher thresholded at the real label balance. Returns numpy (x_train, y_train, x_dev, y_dev)."""
    rng = np.random.default_rng(seed)
    total = num_states + max(int(num_states * dev_fraction), 64)
    emb = rng.standard_normal((total, EMBEDDING_DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    step_frac = rng.random((total, SCALAR_DIM), dtype=np.float32)
    x = np.concatenate([emb, step_frac], axis=1)
    teacher = rng.standard_normal(EMBEDDING_DIM + SCALAR_DIM).astype(np.float32)
    score = x @ teacher * np.sqrt(EMBEDDING_DIM) / 4 + rng.standard_normal(total).astype(np.float32)
    y = (score > np.quantile(score, 1.0 - positive_rate)).astype(np.int32)
    return x[:num_states], y[:num_states], x[num_states:], y[num_states:]


def train_data_on_device(x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray):
    """`synthetic_router_data`'s arrays as the trainer's TrainData (unit weights), on the default JAX device."""
    import jax
    import jax.numpy as jnp

    from hera_jax.router.train import TrainData

    return jax.device_put(TrainData(jnp.asarray(x), jnp.asarray(y), jnp.ones(len(x), jnp.float32), jnp.asarray(x_dev),
                                    jnp.asarray(y_dev)))


def parse_sizes(text: str) -> list[int]:
    """'10k,100k,1M' -> [10000, 100000, 1000000]."""
    scale = {"k": 1_000, "m": 1_000_000}
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        out.append(int(float(part[:-1]) * scale[part[-1]]) if part[-1] in scale else int(part))
    return out


def human(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def environment() -> dict:
    """Date, device and library versions recorded with every result."""
    import jax

    info = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d.device_kind) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    for name in ("flax", "optax", "torch", "sentence_transformers", "numpy"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    try:
        import torch

        info["torch_cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_json(path: Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*[cell if isinstance(cell, str) else fmt(cell) for cell in row])
    Console(width=160).print(table)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def run_measured(command: list[str], log: Path, env: dict[str, str] | None = None,
                 cores: set[int] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GB, exit code) of a child process (with `env`, pinned to `cores` if given)."""
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    start = time.perf_counter()
    with open(log, "w") as f:
        child = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, preexec_fn=pin)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 2**20, child.returncode  # ru_maxrss is in KB on Linux


IL_PHASES = ("load", "featurize", "train_incl_compile", "evaluate", "checkpoint")  # il.py's metrics.json timings_s


def il_run_phases(timings: dict, wall_s: float) -> dict:
    """An il.py process's phases from its metrics.json `timings_s`, and its start-up: wall time minus il.py's own
    total (interpreter, imports, device init)."""
    return {"startup_s": wall_s - timings["total"], **{f"{p}_s": timings.get(p) for p in IL_PHASES}}
