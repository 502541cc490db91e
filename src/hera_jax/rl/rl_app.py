"""Stage 2 (cost-aware RL) as one run (experiments/rl_iter.py is its command line): start from the IL router, then
per iteration roll out the routed hybrid agent with exploration, group identical states, label each group by the
routing choice with the higher return net of future cloud calls, fine-tune, checkpoint and evaluate on held-out
variations. Rerunning with the same --out (or --resume) continues after the last finished iteration.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from hera_jax.agents.config import build_agents
from hera_jax.dataset import check_dataset_env
from hera_jax.envs import simulator_factory
from hera_jax.envs.profiles import profile
from hera_jax.cli import report_console
from hera_jax.errors import HeraError
from hera_jax.rl.config import RLConfig
from hera_jax.rl.loop import run_rl
from hera_jax.rl.run import open_run
from hera_jax.rollout.records import read_manifest
from hera_jax.runs import RUNS_ROOT, locked_run_dir, new_run_dir

RUNS = RUNS_ROOT / "rl"


def resolve_run_dir(config: RLConfig) -> Path:
    if config.out is not None:
        return config.out
    if config.resume:
        runs = sorted(p for p in RUNS.glob("*") if (p / "config.json").exists()) if RUNS.exists() else []
        if not runs:
            raise HeraError(f"--resume: no run under {RUNS} to resume; start one without --resume")
        return runs[-1]
    return new_run_dir(RUNS_ROOT, "rl")


def train_rl(config: RLConfig) -> list[dict]:
    """Run (or resume) the RL stage in its run folder; returns the per-iteration history."""
    console = report_console(160)
    started = time.perf_counter()
    dataset, features_dir = config.dataset_dir(), config.features_path()
    run_dir = resolve_run_dir(config)
    manifest = read_manifest(dataset)
    check_dataset_env(manifest.get("env", {}).get("name"), config.env, dataset)
    env_options = profile(config.env).env_options(manifest)
    with locked_run_dir(run_dir, "rl_iter.py run"):
        cloud, device = build_agents(config.agents, config.env, memo_dir=Path(features_dir))
        console.print(f"RL run folder: {run_dir}  (rerun with --out {shlex.quote(str(run_dir))} to resume after a crash)")
        make_simulator = simulator_factory(config.env, config.max_steps, **env_options)
        env = make_simulator()
        try:
            run = open_run(config, run_dir, env, cloud, device, Path(dataset), Path(features_dir), console=console,
                           make_env=make_simulator)
            console.print(f"{len(run.plan.tasks)} tasks, {len(run.plan.train)} training variations x "
                          f"{config.rollouts_per_task} rollouts per iteration, {len(run.plan.held_out)} held-out "
                          "variations")
            history = run_rl(run)
        finally:
            env.close()
    console.print(f"wrote {run_dir}/iter_*/metrics.json, {run_dir}/summary.json and {run_dir}/checkpoints "
                  f"({time.perf_counter() - started:.0f}s)")
    return history

