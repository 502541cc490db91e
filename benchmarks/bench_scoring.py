"""Device LLM throughput on this CPU: scoring every valid action (llama.cpp, transformers) against free generation.

The states are real: the gold-path states of train variations of each environment, in episode order (so a backend
that keeps the prompt's shared prefix gets the reuse a rollout gets). No memo: every state pays for the model.
Also reported: how often the device's action equals the gold action and how often its reply was a valid action.

    python benchmarks/bench_scoring.py --envs textworld_express:twc alfworld --states 40
    python benchmarks/bench_scoring.py --backends gguf-score llm-score --hf-model runs/gemma_hf

`llm-score` needs the shipped Gemma exported to transformers format once
(`python -m hera_jax.agents.models --export-hf DIR`); ALFWorld needs `$ALFWORLD_DATA`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli


@dataclasses.dataclass(frozen=True)
class BenchScoringConfig:
    """Time the device LLM backends on real states of each environment."""

    envs: tuple[str, ...] = ("textworld_express:twc", "alfworld", "scienceworld")
    states: int = 40
    """Gold-path states per environment (fewer for ScienceWorld, whose states have hundreds of valid actions)."""
    scienceworld_states: int = 4
    backends: tuple[str, ...] = ("gguf-score", "llm-score", "gguf")
    """Device agents to time: 'gguf-score' (llama.cpp scoring), 'llm-score' (transformers scoring, needs
    --hf-model), 'gguf' (llama.cpp free generation of the action, the earlier device)."""
    hf_model: Path | None = None
    """Transformers directory of the device model for 'llm-score' (skipped when not given)."""
    threads: int = 2
    out: Path = ROOT / "benchmarks" / "results" / "cpu" / "scoring.json"


def gold_states(env_name: str, count: int):
    """Up to `count` (state, gold action) pairs along the gold paths of train variations, round robin over tasks."""
    from hera_jax.envs import make_env
    from hera_jax.envs.profiles import profile
    from hera_jax.state import AgentState

    env = make_env(env_name, **profile(env_name).env_options(None))
    try:
        out = []
        tasks = env.task_names()
        for index in range(count):
            if len(out) >= count:
                break
            task = tasks[index % len(tasks)]
            variations = env.variations(task, "train")
            first = env.reset(task, variations[index // len(tasks) % len(variations)])
            history, observation, valid = [], first.observation, tuple(first.valid_actions)
            for action in first.gold_path:
                out.append((AgentState(first.task_description, observation, valid, tuple(history), len(history),
                                       env=env_name, task=task, variation=0), action))
                result = env.step(action)
                history.append((action, result.observation))
                observation, valid = result.observation, tuple(result.valid_actions)
                if len(out) >= count or result.done:
                    break
        return out
    finally:
        env.close()


def make_device(backend: str, cfg: BenchScoringConfig):
    from hera_jax.agents import AgentOptions, make_agent

    options = AgentOptions(model=str(cfg.hf_model) if backend == "llm-score" else "", n_threads=cfg.threads,
                           max_new_tokens=20)
    return make_agent("device", backend, options)


def main(cfg: BenchScoringConfig) -> dict:
    from hera_jax.state import normalize_action

    results = []
    for env_name in cfg.envs:
        count = cfg.scienceworld_states if env_name == "scienceworld" else cfg.states
        try:
            pairs = gold_states(env_name, count)
        except Exception as e:  # e.g. ALFWorld without $ALFWORLD_DATA: report and go on
            print(f"{env_name}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
            continue
        for backend in cfg.backends:
            if backend == "llm-score" and cfg.hf_model is None:
                continue
            t0 = time.perf_counter()
            device = make_device(backend, cfg)
            device.act(pairs[0][0])  # loads the model (and is not timed with the states)
            load_s = time.perf_counter() - t0
            steps, start = [], time.perf_counter()
            for state, _ in pairs:
                steps.append(device.act(state))
            seconds = time.perf_counter() - start
            results.append({
                "env": env_name, "backend": backend, "device": device.name, "states": len(pairs),
                "seconds": seconds, "states_per_s": len(pairs) / seconds, "load_s": load_s,
                "mean_prompt_tokens": float(np.mean([s.tokens_in for s in steps])),
                "mean_valid_actions": float(np.mean([len(tuple(p[0].valid_actions)) for p in pairs])),
                "valid_action_rate": float(np.mean([s.action in tuple(p[0].valid_actions)
                                                    for s, p in zip(steps, pairs)])),
                "gold_agreement": float(np.mean([normalize_action(s.action) == normalize_action(p[1])
                                                 for s, p in zip(steps, pairs)])),
            })
            del device
    print_table("Device LLM on real gold-path states, no memo (CPU, 2 threads)",
                ["env", "backend", "states", "states/s", "load s", "prompt tokens", "valid actions",
                 "valid replies", "= gold"],
                [[r["env"], r["backend"], r["states"], r["states_per_s"], r["load_s"], r["mean_prompt_tokens"],
                  r["mean_valid_actions"], r["valid_action_rate"], r["gold_agreement"]] for r in results])
    payload = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()},
               "results": results, "environment": environment()}
    write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    run_cli(main, BenchScoringConfig)
