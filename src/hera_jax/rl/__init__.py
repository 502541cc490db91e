"""Hera stage 2: cost-aware RL over the router, iterated (see loop.py for the run folder and the steps).

visits.py (rollout records -> visits, groups of identical states, return estimates) -> preferences.py (the label
rule: which routing choice each group prefers, and the group weights) -> loss.py (the one builder of preference rows
and the grouped loss) -> train.py (the jitted fine-tune); exploration.py (the exploration rate per iteration);
config.py (RLConfig, every design choice as a flag); loop.py (run folder, rollouts, iterations).
"""

from hera_jax.rl.config import RLConfig
from hera_jax.rl.loop import RLRun, finished_iterations, iteration_table, open_run, run_rl
from hera_jax.rl.visits import VisitTable, future_sums, group_ids, visit_table

__all__ = [
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
