"""Where a routed step's time goes in the rollout engine, phase by phase: the simulator (reset and step), the
encoder (new states' embeddings), the router's forward, the agents (STAND-INS: gold-path oracle cloud, perturbed-gold
device; their `act` also lists ScienceWorld's valid actions, which the simulator answers lazily), and the rest
(the engine's own bookkeeping and the records it writes). Run on the setting `bench_rollout.py` found fastest
(B=1); it is the profile behind the rollout targets in RESULTS.md ("the profile that shows why not").

Each phase is timed at its boundary (wall seconds inside the calls), on the same episodes, router and empty
embedding cache as `bench_rollout.py`, so the table adds up to the run's wall time. Alongside, the CPU seconds of
this process and of the simulators' processes, and what a target's speedup would leave for each step.

    python benchmarks/profile_rollout.py --envs scienceworld textworld_express:twc
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import threading
import time
from pathlib import Path

from bench_rollout import (STAND_INS, BenchRolloutConfig, timed_run, bench_setup, per_state_reference, plan,
                           train_router, write_results)
from common import ROOT, print_table

from hera_jax.cli import run_cli

PHASES = ("simulator", "encoder", "router forward", "agents")


@dataclasses.dataclass(frozen=True)
class ProfileRolloutConfig:
    """Time each phase of a routed step in the engine against the per-state path's steps per second."""

    envs: tuple[str, ...] = ("scienceworld", "textworld_express:twc")
    episodes: int = 16
    max_steps: int = 15
    tasks: tuple[str, ...] = BenchRolloutConfig.tasks
    """ScienceWorld tasks (others use all of theirs), as in bench_rollout.py."""
    batch_size: int = 1
    text_design: str = "segments"
    threshold: float = 0.5
    targets: tuple[str, ...] = ("scienceworld=5", "textworld_express:twc=10")
    """The issue's speedups over the per-state path, env=x: each row says what a step may cost at that speed."""
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "profile_rollout.json"


class PhaseClock:
    """Wall seconds and calls inside each phase, from every thread (the engine steps simulators in threads)."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)
        self._lock = threading.Lock()

    def timed(self, phase: str, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[phase] += time.perf_counter() - t0
                    self.calls[phase] += 1
        return run


class _Timed:
    """An env or agent whose named methods are timed; everything else passes through to the wrapped object."""

    def __init__(self, inner, clock: PhaseClock, phase: str, methods: tuple[str, ...]):
        self._inner = inner
        for name in methods:
            if hasattr(inner, name):
                setattr(self, name, clock.timed(phase, getattr(inner, name)))

    def __getattr__(self, name):
        return getattr(self._inner, name)


def timed_setup(clock: PhaseClock, *args):
    """`bench_rollout.bench_setup` with its simulators, agents, encoder and router forward timed."""
    setup = bench_setup(*args)
    policy = setup.policies["router"]
    scorer = policy.scorer
    scorer.embedder.encode = clock.timed("encoder", scorer.embedder.encode)
    scorer.p_cloud = clock.timed("router forward", scorer.p_cloud)
    make_env = setup.make_env
    return dataclasses.replace(
        setup,
        make_env=lambda: _Timed(make_env(), clock, "simulator", ("reset", "step")),
        cloud=_Timed(setup.cloud, clock, "agents", ("act", "act_batch")),
        device=_Timed(setup.device, clock, "agents", ("act", "act_batch")))


def main(cfg: ProfileRolloutConfig) -> dict:
    from hera_jax.features import sentence_encode_fn
    from hera_jax.rollout.engine import EngineConfig, Job, run_jobs
    from hera_jax.rollout.records import read_steps

    targets = {env: float(x) for env, x in (t.rsplit("=", 1) for t in cfg.targets)}
    sentence_encode_fn(show_progress=False)(["warm-up: load the encoder once before timing"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for env_name in cfg.envs:
            folder = tmp / env_name.replace(":", "_")
            train_router(env_name, folder / "checkpoint", cfg.text_design)
            train_router(env_name, folder / "joint_checkpoint")  # the per-state path embeds whole state texts
            specs = plan(env_name, cfg.tasks, cfg.episodes)
            reference_steps, reference = timed_run(lambda: per_state_reference(
                env_name, specs, folder / "joint_checkpoint", cfg.threshold, cfg.max_steps))
            reference_steps_per_s = reference_steps / reference["seconds"]
            clock = PhaseClock()
            make_setup = functools.partial(timed_setup, clock, env_name, folder / "checkpoint", folder / "cache",
                                           cfg.threshold, cfg.max_steps)
            jobs = [Job(spec, "router") for spec in specs]
            _, timing = timed_run(lambda: run_jobs(jobs, folder / "rollouts.jsonl", make_setup,
                                                EngineConfig(batch_size=cfg.batch_size), "profile",
                                                show_progress=False))
            steps = len(read_steps(folder / "rollouts.jsonl")[0])
            seconds = timing["seconds"]
            phases = {p: clock.seconds[p] for p in PHASES}
            phases["engine and records (the rest)"] = seconds - sum(phases.values())
            target = targets.get(env_name)
            budget_ms = 1e3 / (reference_steps_per_s * target) if target else None
            rows.append({
                "env": env_name, "batch_size": cfg.batch_size, "text_design": cfg.text_design,
                "episodes": len(specs), "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
                "per_state_path": {"steps": reference_steps, **reference, "steps_per_s": reference_steps_per_s},
                "speedup": steps / seconds / reference_steps_per_s, "cpu": timing,
                "phase_seconds": phases, "phase_calls": dict(clock.calls),
                "phase_ms_per_step": {p: s / steps * 1e3 for p, s in phases.items()},
                "target_x": target, "step_budget_ms_at_target": budget_ms})
    for r in rows:
        budget = r["step_budget_ms_at_target"]
        print_table(
            f"{r['env']}: engine B={r['batch_size']}, {r['steps']} routed steps in {r['seconds']:.1f} s "
            f"({r['speedup']:.2f}x the per-state path's {r['per_state_path']['steps_per_s']:.1f} steps/s); "
            f"{STAND_INS}; CPU: python {r['cpu']['cpu_python_s']:.1f} s, simulators {r['cpu']['cpu_simulators_s']:.1f} s"
            + (f"; at the {r['target_x']:g}x target a step may take {budget:.1f} ms" if budget else ""),
            ["phase", "seconds", "calls", "ms a routed step", "share of the wall"],
            [[p, s, r["phase_calls"].get(p, ""), r["phase_ms_per_step"][p], s / r["seconds"]]
             for p, s in r["phase_seconds"].items()])
    return write_results(cfg, rows)


if __name__ == "__main__":
    run_cli(main, ProfileRolloutConfig)
