"""Hera stage 2: cost-aware RL over the router, iterated (run.py: the run folder; loop.py: the steps).

visits.py (rollout records -> visits, groups of identical states, return estimates) -> preferences.py (the label
rule: which routing choice each group prefers, and the group weights) -> loss.py (the one builder of preference rows
and the grouped loss) -> train.py (the jitted fine-tune); exploration.py (the exploration rate per iteration);
config.py (RLConfig, every design choice as a flag); run.py (the run folder and what a run works with);
rollouts.py (exploration rollouts, held-out evaluation, baselines through the engine); report.py (the table);
loop.py (one iteration and the iterations); rl_app.py (the rl_iter.py command).
"""

import importlib

from hera_jax.rl.config import ExplorationConfig, PreferenceConfig, RLConfig

# the rest loads on first use: rl_iter.py parses its flags (RLConfig) before JAX is imported
_LAZY = {"run_rl": "loop", "iteration_table": "report", "RLRun": "run", "finished_iterations": "run",
         "open_run": "run", "VisitTable": "visits", "future_sums": "visits", "group_ids": "visits",
         "visit_table": "visits"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"hera_jax.rl.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hera_jax.rl' has no attribute {name!r}")

__all__ = [
    "ExplorationConfig",
    "PreferenceConfig",
    "RLConfig",
    "RLRun",
    "VisitTable",
    "finished_iterations",
    "future_sums",
    "group_ids",
    "iteration_table",
    "open_run",
    "run_rl",
    "visit_table",
]
