"""Which stand-in device mistakes cannot be walked back? Evidence for the `bayes-harm` baseline's rule.

For each gold step k of a few (task, variation)s: replay the gold path to k, take one of the stand-in device's
possible mistakes there (same verb, wrong object: `PerturbedGoldDevice._mistake`), then let the cloud stand-in
finish (the gold-path oracle; where the environment has a re-planning expert, that expert, as its `oracle` does).
Per verb of the mistake: how often the mistake ended the episode at once as a failure,
and how often the episode failed in the end. Simulators only, no router; tiny by design.
experiments/probe_irreversible.py is its command line.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from hera_jax.agents.stand_ins import PerturbedGoldDevice, gold_next_action
from hera_jax.envs import make_env
from hera_jax.envs.profiles import profile
from hera_jax.evaluate.baselines.bayes_harm import action_verb


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Replay gold paths with one stand-in device mistake each; count mistakes that end or doom the episode."""

    env: str = "textworld_express:twc"
    """Environment registry name."""
    tasks: tuple[str, ...] = ()
    """Task names (default: all of the env's tasks)."""
    variations: int = 2
    """Train-split variations per task."""
    mistakes_per_step: int = 2
    """Distinct device mistakes tried at each gold step."""
    extra_steps: int = 10
    """Steps beyond the gold path's length the cloud stand-in gets to recover."""
    out: Path | None = None
    """Optional JSON with the per-mistake-verb counts and every probe."""


def probe_one(env, task: str, variation: int, k: int, draw: int, extra_steps: int) -> dict | None:
    """Gold path to step k, one device mistake (the device's own pick for key `draw`), then the cloud stand-in."""
    first = env.reset(task, variation)
    gold, valid = first.gold_path, first.valid_actions
    if k >= len(gold):  # the simulator drew a shorter gold path on this reset
        return None
    past: list[str] = []
    for action in gold[:k]:
        valid = env.step(action).valid_actions
        past.append(action)
    mistake = PerturbedGoldDevice._mistake(gold[k], valid, ("probe", task, variation, k, draw))
    result = env.step(mistake)
    past.append(mistake)
    ended_failed = result.done and not result.success
    success = result.success
    for _ in range(len(gold) + extra_steps):
        if result.done:
            break
        action = result.expert_action or gold_next_action(gold, tuple(past)) or "look around"
        result = env.step(action)
        past.append(action)
        success = result.success
    return {"task": task, "variation": variation, "step": k, "gold": gold[k], "mistake": mistake,
            "verb": action_verb(gold[k]), "mistake_verb": action_verb(mistake), "ended_failed": bool(ended_failed),
            "success": bool(success)}


def probe_mistakes(config: ProbeConfig) -> dict:
    """Run the probes; print and return the per-mistake-verb counts (and write them to `config.out`)."""
    env = make_env(config.env, step_limit=200, **profile(config.env).env_options())
    probes = []
    try:
        for task in config.tasks or env.task_names():
            for variation in env.variations(task, "train")[: config.variations]:
                for k in range(len(env.reset(task, variation).gold_path)):
                    tried = set()
                    for draw in range(config.mistakes_per_step):
                        probe = probe_one(env, task, variation, k, draw, config.extra_steps)
                        if probe is not None and probe["mistake"] not in tried:
                            tried.add(probe["mistake"])
                            probes.append(probe)
    finally:
        env.close()
    # per verb of the device's MISTAKE (what it does to the world), as in bayes_harm.UNRECOVERABLE
    by_verb: dict[str, dict[str, int]] = defaultdict(lambda: {"probes": 0, "ended_failed": 0, "failed": 0})
    for p in probes:
        counts = by_verb[p["mistake_verb"]]
        counts["probes"] += 1
        counts["ended_failed"] += p["ended_failed"]
        counts["failed"] += not p["success"]
    print(f"{config.env}: {len(probes)} probes (one device mistake each, then the cloud stand-in)")
    print(f"{'mistake verb':<14}{'probes':>8}{'ended at once':>15}{'failed':>8}")
    for verb, c in sorted(by_verb.items(), key=lambda kv: -kv[1]["failed"] / kv[1]["probes"]):
        print(f"{verb:<14}{c['probes']:>8}{c['ended_failed']:>15}{c['failed']:>8}")
    result = {"env": config.env, "config": dataclasses.asdict(config) | {"out": str(config.out)},
              "by_verb": dict(by_verb), "probes": probes}
    if config.out is not None:
        config.out.write_text(json.dumps(result, indent=1))
    return result

