"""IL router training, 20 epochs: hera_jax (one jitted program, lax.scan) vs a plain PyTorch loop.

Same MLP (385 -> 256 -> 128 -> 1, tanh-GELU), same loss (BCE with pos_weight and per-example weights), same optimiser
(AdamW, warmup-cosine schedule stepped every minibatch), same batch size, a dev evaluation (loss + AUROC) and a
best-parameters copy after every epoch, on the same device. Compile / warm-up time is reported apart from the
steady-state throughput (states per second = training states x epochs / seconds).

    python benchmarks/bench_il.py                      # CPU-sized default
    python benchmarks/bench_il.py --sizes 10k,100k,1M  # the GPU rows
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# Let PyTorch share the GPU: JAX would otherwise reserve 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
from common import (  # noqa: E402
    ROOT, Timer, environment, human, parse_sizes, print_table, shipped_positive_rate, synthetic_router_data,
    train_data_on_device, write_json,
)

from hera_jax.cli import run_cli  # noqa: E402
from hera_jax.router.train import TrainConfig, make_train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class BenchILConfig:
    """Time IL router training (hera_jax vs PyTorch eager / torch.compile)."""

    sizes: str = "10k,100k"
    """Training-set sizes (states), comma separated; k and M suffixes allowed."""
    epochs: int = 20
    """Epochs per run (early stopping is disabled so every run does all of them)."""
    batch_size: int = 256
    hidden_sizes: tuple[int, ...] = (256, 128)
    learning_rate: float = 1e-3
    frameworks: tuple[str, ...] = ("jax", "torch-eager", "torch-compile")
    """Which implementations to time."""
    torch_max_epochs: int | None = None
    """Time PyTorch on at most this many epochs and extrapolate to `epochs` (marked in the table); None = all."""
    torch_threads: int | None = None
    """torch.set_num_threads for CPU runs (None = PyTorch's default); on a loaded shared CPU 1 thread is faster."""
    positive_rate: float | None = None
    """Label balance of the synthetic data (default: the shipped dataset's IL needs-cloud rate)."""
    out: Path = ROOT / "benchmarks" / "results" / "il.json"


def time_jax(config: TrainConfig, x, y, x_dev, y_dev) -> dict:
    n = x.shape[0]
    data = train_data_on_device(x, y, x_dev, y_dev)
    rng = jax.random.key(0)
    with Timer() as compile_t:
        train = jax.jit(make_train(config, n)).lower(rng, data).compile()
    with Timer() as first_t:
        result = jax.block_until_ready(train(rng, data))
    with Timer() as steady_t:
        result = jax.block_until_ready(train(rng, data))
    assert int(result.epochs_run) == config.max_epochs
    return {
        "compile_s": compile_t.seconds,
        "first_run_s": first_t.seconds,
        "total_incl_compile_s": compile_t.seconds + first_t.seconds,
        "steady_s": steady_t.seconds,
        "states_per_s": n * config.max_epochs / steady_t.seconds,
        "final_dev_auroc": float(result.dev_auroc[-1]),
        "epochs_timed": config.max_epochs,
    }


def time_torch(config: TrainConfig, x, y, x_dev, y_dev, compiled: bool, max_epochs: int | None) -> dict:
    import math

    import torch

    torch.set_float32_matmul_precision("highest")  # plain float32 matmuls, like jax_default_matmul_precision=float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    n, dim = x.shape
    x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(y).float().to(device)
    w_t = torch.ones(n, device=device)
    x_dev_t, y_dev_t = torch.from_numpy(x_dev).to(device), torch.from_numpy(y_dev).float().to(device)
    layers, width_in = [], dim
    for width in config.hidden_sizes:
        layers += [torch.nn.Linear(width_in, width), torch.nn.GELU(approximate="tanh")]
        width_in = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 1)).to(device)
    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch
    warmup, total = config.warmup_epochs * steps_per_epoch, config.max_epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  eps=1e-8)

    def lr_factor(step):  # optax.warmup_cosine_decay_schedule with peak 1
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    pos_weight = (y_t == 0).sum() / (y_t == 1).sum()

    def loss_fn(xb, yb, wb):
        logits = model(xb)[:, 0]
        per_example = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
        scale = wb * torch.where(yb > 0, pos_weight, 1.0)
        return (per_example * scale).sum() / scale.sum()

    def dev_auroc(scores, labels):  # Mann-Whitney U on ranks (ties ignored: continuous scores)
        ranks = torch.empty_like(scores)
        ranks[scores.argsort()] = torch.arange(1, scores.numel() + 1, device=scores.device, dtype=scores.dtype)
        pos = labels > 0
        num_pos, num_neg = pos.sum(), (~pos).sum()
        return (ranks[pos].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)

    step_loss = torch.compile(loss_fn) if compiled else loss_fn

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def train_step(idx):
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(x_t[idx], y_t[idx], w_t[idx])
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.detach()

    # Warm-up: the first steps pay torch.compile's compilation (and CUDA's lazy initialisation).
    warm_idx = torch.arange(batch, device=device)
    with Timer() as warm_t:
        for _ in range(3):
            train_step(warm_idx)
        sync()
    epochs = config.max_epochs if max_epochs is None else min(max_epochs, config.max_epochs)
    best_score, best_state = -float("inf"), None
    with Timer() as steady_t:
        for _ in range(epochs):
            order = torch.randperm(n, device=device)
            epoch_loss = torch.zeros((), device=device)
            model.train()
            for s in range(steps_per_epoch):
                epoch_loss += train_step(order[s * batch:(s + 1) * batch])
            with torch.no_grad():
                dev_logits = model(x_dev_t)[:, 0]
                auc = float(dev_auroc(torch.sigmoid(dev_logits), y_dev_t))  # one host sync per epoch
            if auc > best_score:
                best_score, best_state = auc, {k: v.detach().clone() for k, v in model.state_dict().items()}
        sync()
    del best_state
    per_epoch = steady_t.seconds / epochs
    return {
        "compile_s": warm_t.seconds,
        "first_run_s": None,
        "total_incl_compile_s": warm_t.seconds + per_epoch * config.max_epochs,
        "steady_s": per_epoch * config.max_epochs,
        "states_per_s": n * epochs / steady_t.seconds,
        "final_dev_auroc": auc,
        "epochs_timed": epochs,
    }


def main(cfg: BenchILConfig) -> dict:
    jax.config.update("jax_default_matmul_precision", "float32")
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    positive_rate = shipped_positive_rate() if cfg.positive_rate is None else cfg.positive_rate
    train_config = TrainConfig(hidden_sizes=cfg.hidden_sizes, learning_rate=cfg.learning_rate,
                               batch_size=cfg.batch_size, max_epochs=cfg.epochs, patience=cfg.epochs + 1)
    rows = []
    for n in parse_sizes(cfg.sizes):
        x, y, x_dev, y_dev = synthetic_router_data(n, positive_rate)
        for framework in cfg.frameworks:
            try:
                if framework == "jax":
                    r = time_jax(train_config, x, y, x_dev, y_dev)
                elif framework in ("torch-eager", "torch-compile"):
                    r = time_torch(train_config, x, y, x_dev, y_dev, framework == "torch-compile",
                                   cfg.torch_max_epochs)
                else:
                    raise ValueError(f"unknown framework {framework!r}")
                r["error"] = None
            except Exception as e:  # e.g. torch.compile without a working compiler: record it, keep going
                r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            rows.append({"states": n, "framework": framework, **r})
            print(rows[-1], flush=True)
            write_json(cfg.out, {"benchmark": "il_training", "partial": True, "rows": rows})  # survives a kill
    for row in rows:  # speed-up of hera_jax over each PyTorch variant, steady state and including compile
        jax_row = next((r for r in rows if r["states"] == row["states"] and r["framework"] == "jax"), None)
        if jax_row and not jax_row.get("error") and not row.get("error"):
            row["jax_speedup_steady"] = jax_row["states_per_s"] / row["states_per_s"]
            row["jax_speedup_incl_compile"] = row["total_incl_compile_s"] / jax_row["total_incl_compile_s"]
    env = environment()
    payload = {"benchmark": "il_training", "config": dataclasses.asdict(cfg) | {"out": str(cfg.out)},
               "positive_rate": positive_rate, "environment": env, "rows": rows}
    write_json(cfg.out, payload)
    print_table(
        f"IL training, {cfg.epochs} epochs, batch {cfg.batch_size}, MLP {cfg.hidden_sizes} on "
        f"{env['jax_devices'][0]} ({env['date'][:10]})",
        ["states", "framework", "compile/warm-up s", "total incl. compile s", "steady states/s",
         "jax speed-up (steady)", "jax speed-up (incl. compile)", "dev AUROC", "note"],
        [[human(r["states"]), r["framework"], r.get("compile_s"), r.get("total_incl_compile_s"),
          r.get("states_per_s"), r.get("jax_speedup_steady"), r.get("jax_speedup_incl_compile"),
          r.get("final_dev_auroc"),
          r["error"] or (f"timed {r['epochs_timed']} epochs, extrapolated" if r["epochs_timed"] < cfg.epochs
                         else "")] for r in rows],
    )
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchILConfig)
