"""Routed steps per second of the hybrid agent on this CPU: the per-state path the RL loop and evaluation used before
the engine (one simulator reused, each state embedded alone, one router forward per state) against the rollout
engine (`hera_jax.rollout.engine`) at batch sizes B, in-process and on Ray workers (`--held-rows`: also held in
lockstep by the slowest simulator, as the engine was before `--engine.gather-s`).

Setup: an IL router trained here on the shipped dataset of each environment; stand-in agents (STAND-INS, not
LLMs: cloud = gold-path oracle, device = perturbed gold path); episodes on the test split; every setting starts
with an empty embedding cache (nothing read from the dataset's cache), so each new state goes through the encoder.

Each row says where its CPU went (this process: agents, embedding, router, engine; the simulators' own processes)
and the most it could gain on this machine ("x if only the simulators ran": its simulators' CPU alone, spread over
every core, as the wall time), which is what bounds the engine when the simulators are most of the work.

    python benchmarks/bench_rollout.py --envs textworld_express:twc --episodes 16 --max-steps 15
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli

STAND_INS = ("stand-in agents (STAND-INS, not LLMs: gold-path oracle cloud and perturbed-gold device; on ALFWorld its "
             "re-planning expert and the perturbed expert)")


@dataclasses.dataclass(frozen=True)
class BenchRolloutConfig:
    """Time routed rollouts: today's per-state path vs the engine at several batch sizes and with Ray workers."""

    envs: tuple[str, ...] = ("textworld_express:twc", "scienceworld")
    episodes: int = 32
    """Routed episodes per setting (test-split variations, round robin over the tasks)."""
    tasks: tuple[str, ...] = ("find-animal", "find-plant", "power-component", "lifespan-longest-lived",
                              "chemistry-mix", "test-conductivity")
    """ScienceWorld tasks (TWC uses all of its tasks)."""
    max_steps: int = 20
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    held_rows: bool = False
    """Also run each batch size > 1 held in lockstep (every slot waits for the slowest step: the engine before
    `--engine.gather-s`), to show what not waiting for the slowest simulator gains."""
    ray_workers: int = 2
    """Ray workers for the last setting (at the largest batch size that fits the episodes per worker); 0 skips."""
    threshold: float = 0.5
    text_design: str = "joint"
    """Router input of the engine rows (FeatureSpec.text_design); the per-state path stays today's joint one."""
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "rollout.json"


def train_router(env: str, folder: Path, text_design: str = "joint"):
    """A small IL router on the shipped dataset's train split (its features from the shipped cache)."""
    from hera_jax.dataset import load_il_table
    from hera_jax.envs.profiles import profile
    from hera_jax.features import FeatureSpec, featurize
    from hera_jax.router.checkpoint import save_router
    from hera_jax.router.il import train_and_evaluate
    from hera_jax.router.train import TrainConfig

    dataset = Path(profile(env).dataset)
    table = load_il_table(dataset, profile(env).unseen_tasks)
    spec = FeatureSpec(text_design=text_design)
    with tempfile.TemporaryDirectory() as copy:  # featurize may add to its cache: never to the shipped one
        import shutil

        shutil.copytree(dataset / "features", copy, dirs_exist_ok=True)
        features, _ = featurize(table.state_key, table.state_text, table.step, spec, copy)
    config = TrainConfig(hidden_sizes=(256, 128), max_epochs=10, patience=10)
    params, _, metrics, _ = train_and_evaluate(table, features, config, dataset)
    save_router(folder, 0, params, config, spec, {"bench": True})
    return metrics


def plan(env_name: str, tasks: tuple[str, ...], episodes: int):
    from hera_jax.envs import make_env
    from hera_jax.envs.profiles import profile
    from hera_jax.rollout.episode import EpisodeSpec

    env = make_env(env_name, step_limit=60)
    try:
        names = list(tasks) if profile(env_name).collect_tasks else env.task_names()  # --tasks are ScienceWorld tasks; others use all
        pools = {t: env.variations(t, "test") for t in names}
    finally:
        env.close()
    specs = []
    for i in range(episodes):
        task = names[i % len(names)]
        variation = pools[task][i // len(names)]
        specs.append(EpisodeSpec(env_name, task, variation, "test", f"bench/{task}/{variation}"))
    return specs


def bench_setup(env_name: str, checkpoint: Path, cache_dir: Path, threshold: float, max_steps: int):
    """One engine worker: its simulators, the stand-ins, and the router policy over an empty cache."""
    from hera_jax.agents.config import AgentsConfig, build_agents
    from hera_jax.envs import make_env
    from hera_jax.rollout.engine import Policy, WorkerSetup
    from hera_jax.rollout.episode import EpisodeSettings
    from hera_jax.rollout.routing import routed
    from hera_jax.router.checkpoint import load_router
    from hera_jax.router.scorer import RouterScorer, StateEmbedder

    bundle = load_router(checkpoint, 0)
    scorer = RouterScorer(bundle, StateEmbedder(bundle.feature_spec, cache_dir))
    cloud, device = build_agents(AgentsConfig(), env_name)
    return WorkerSetup(make_env=functools.partial(make_env, env_name, step_limit=max_steps + 10),
                       cloud=cloud, device=device,
                       policies={"router": Policy(routed(scorer, threshold), scorer)},
                       settings=EpisodeSettings(max_steps=max_steps))


def per_state_reference(env_name: str, specs, checkpoint: Path, threshold: float, max_steps: int) -> int:
    """Before the engine: one simulator reused for every episode, its valid actions listed at every step; each routed
    step embeds its state alone (cached by key) and runs one router forward. Returns the number of routed steps."""
    from hera_jax.agents.config import AgentsConfig, build_agents
    from hera_jax.envs import make_env
    from hera_jax.features import scalar_features, sentence_encode_fn
    from hera_jax.router.checkpoint import load_router
    from hera_jax.router.scorer import p_cloud_fn
    from hera_jax.state import AgentState, state_key, state_text

    bundle = load_router(checkpoint, 0)
    forward = p_cloud_fn(tuple(bundle.train_config.hidden_sizes))
    encode = sentence_encode_fn(bundle.feature_spec.encoder, show_progress=False)
    cloud, device = build_agents(AgentsConfig(), env_name)
    embedded: dict[str, np.ndarray] = {}
    env = make_env(env_name, step_limit=max_steps + 10)
    steps = 0
    try:
        for spec in specs:
            first = env.reset(spec.task, spec.variation)
            # tuple(): the adapters listed the valid actions at every step before 2026-11-26 (ScienceWorld's now
            # lists them only when an agent reads them; `envs.base.LazyActions`)
            observation, valid, history = first.observation, tuple(first.valid_actions), []
            expert = first.expert_action
            for step in range(max_steps):
                state = AgentState(first.task_description, observation, valid, tuple(history), step, first.gold_path,
                                   spec.env, spec.task, spec.variation, expert)
                text = state_text(state)
                key = state_key(text)
                if key not in embedded:
                    embedded[key] = encode([text])[0]
                x = np.concatenate([embedded[key][None], scalar_features(np.array([step]), bundle.feature_spec)], 1)
                p = float(forward(bundle.params, x)[0])
                action = (cloud if p >= threshold else device).act(state).action
                result = env.step(action)
                steps += 1
                history.append((action, result.observation))
                observation, valid, expert = result.observation, tuple(result.valid_actions), result.expert_action
                if result.done:
                    break
    finally:
        env.close()
    return steps


def cpu_seconds() -> tuple[float, float]:
    """(this process's CPU s, its child processes' CPU s) so far; the children are the simulators' JVMs (and
    engine worker processes): those still running are read live, those already ended from the kernel's tally."""
    import resource

    import psutil

    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            live += times.user + times.system
        except psutil.Error:  # ended between listing and reading: the kernel's tally has it once reaped
            pass
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), live + ended.ru_utime + ended.ru_stime


def timed_run(run) -> tuple[object, dict]:
    """`run()`, with its wall time and where the CPU went: this process (agents, embedding, router, engine) and the
    simulators' processes. CPU / wall near the core count means the machine, not waiting, bounds the row."""
    own0, children0 = cpu_seconds()
    t0 = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - t0
    own1, children1 = cpu_seconds()
    own, children = own1 - own0, children1 - children0
    return out, {"seconds": seconds, "cpu_python_s": own, "cpu_simulators_s": children,
                 "cpu_busy_cores": (own + children) / seconds}


def main(cfg: BenchRolloutConfig) -> dict:
    from hera_jax.features import sentence_encode_fn
    from hera_jax.rollout.engine import EngineConfig, Job, run_jobs
    from hera_jax.rollout.records import read_steps

    sentence_encode_fn(show_progress=False)(["warm-up: load the encoder once before timing"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for env_name in cfg.envs:
            checkpoint = tmp / env_name.replace(":", "_") / "checkpoint"
            router_metrics = train_router(env_name, checkpoint, cfg.text_design)
            reference_checkpoint = checkpoint
            if cfg.text_design != "joint":  # today's path embeds whole state texts
                reference_checkpoint = tmp / env_name.replace(":", "_") / "joint_checkpoint"
                train_router(env_name, reference_checkpoint)
            specs = plan(env_name, cfg.tasks, cfg.episodes)
            steps, timing = timed_run(lambda: per_state_reference(env_name, specs, reference_checkpoint, cfg.threshold,
                                                               cfg.max_steps))
            base = {"env": env_name, "episodes": len(specs), "router_dev_auroc": router_metrics.get("dev", {})
                    .get("auroc")}
            results.append({**base, "setting": "per-state path (before)", "steps": steps, **timing,
                            "steps_per_s": steps / timing["seconds"]})
            design = "" if cfg.text_design == "joint" else f", {cfg.text_design} router input"
            settings = [(f"engine B={b}{design}", EngineConfig(batch_size=b)) for b in cfg.batch_sizes]
            if cfg.held_rows:
                settings += [(f"engine B={b}{design}, held in lockstep", EngineConfig(batch_size=b, gather_s=1e6))
                             for b in cfg.batch_sizes if b > 1]
            # what a fresh simulator per episode costs (reuse is the default for ScienceWorld / TextWorldExpress,
            # whose JVMs start with constant identity hashes, so records stay the same: envs/jvm.py)
            settings.append((f"engine B={max(cfg.batch_sizes)}{design}, a fresh simulator per episode",
                             EngineConfig(batch_size=max(cfg.batch_sizes), fresh_env_per_episode=True)))
            if cfg.ray_workers > 1:
                b = min(max(cfg.batch_sizes), -(-len(specs) // cfg.ray_workers))
                settings.append((f"engine B={b}{design}, {cfg.ray_workers} Ray workers",
                                 EngineConfig(batch_size=b, workers=cfg.ray_workers)))
            for name, engine in settings:
                run_dir = tmp / f"{env_name.replace(':', '_')}-{len(results)}"
                make_setup = functools.partial(bench_setup, env_name, checkpoint, run_dir / "cache", cfg.threshold,
                                               cfg.max_steps)
                jobs = [Job(spec, "router") for spec in specs]
                report, timing = timed_run(lambda: run_jobs(jobs, run_dir / "rollouts.jsonl", make_setup, engine, name,
                                                         show_progress=False))
                rows, _ = read_steps(run_dir / "rollouts.jsonl")
                results.append({**base, "setting": name, "steps": len(rows), **timing,
                                "steps_per_s": len(rows) / timing["seconds"],
                                "states_embedded": report.accounting.get("states_embedded",
                                                                         sum(w["states_embedded"] for w in
                                                                             report.accounting.get("workers", [])))})
            reference = results[-len(settings) - 1]["steps_per_s"]
            for r in results[-len(settings) - 1:]:
                r["speedup"] = r["steps_per_s"] / reference
                r["bound_x_per_state"] = r["steps"] / (r["cpu_simulators_s"] / (os.cpu_count() or 1)) / reference
    print_table(f"Routed steps per second, {STAND_INS}, IL router, cold embedding cache (CPU, shared and loaded)",
                ["env", "setting", "episodes", "routed steps", "seconds", "steps/s", "x per-state path",
                 "CPU s: python / simulators", "busy cores", "x if only the simulators ran"],
                [[r["env"], r["setting"], r["episodes"], r["steps"], r["seconds"], r["steps_per_s"], r["speedup"],
                  f"{r['cpu_python_s']:.1f} / {r['cpu_simulators_s']:.1f}", r["cpu_busy_cores"], r["bound_x_per_state"]]
                 for r in results])
    # The most a row could gain on this machine: its simulators' CPU alone, spread over every core, as its wall time.
    cores = os.cpu_count() or 1
    for r in results:
        print(f"{r['env']}, {r['setting']}: with nothing but its simulators running, on all {cores} cores, "
              f"{r['bound_x_per_state']:.2f}x the per-state path at most (measured {r['speedup']:.2f}x)")
    return write_results(cfg, results)


def write_results(cfg, results: list[dict]) -> dict:
    """The JSON both rollout benchmarks write to `cfg.out`: the stand-ins' label, the config, the rows."""
    payload = {"agents": STAND_INS, "config": {k: str(v) if isinstance(v, Path) else v
                                               for k, v in dataclasses.asdict(cfg).items()},
               "results": results, "environment": environment()}
    write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    run_cli(main, BenchRolloutConfig)
