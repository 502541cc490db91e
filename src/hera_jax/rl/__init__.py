"""Hera stage 2: cost-aware RL over the router, iterated (run.py: the run folder; loop.py: the steps).

visits.py (rollout records -> visits, groups of identical states, return estimates) -> preferences.py (the label
rule: which routing choice each group prefers, and the group weights) -> loss.py (the one builder of preference rows
and the grouped loss) -> train.py (the jitted fine-tune); exploration.py (the exploration rate per iteration);
config.py (RLConfig, every design choice as a flag); run.py (the run folder and what a run works with);
rollouts.py (exploration rollouts, held-out evaluation, baselines through the engine); report.py (the table);
loop.py (one iteration and the iterations); rl_app.py (the rl_iter.py command).
"""

from hera_jax.rl.config import ExplorationConfig, PreferenceConfig, RLConfig
from hera_jax.rl.loop import run_rl
from hera_jax.rl.report import iteration_table
from hera_jax.rl.run import RLRun, finished_iterations, open_run
from hera_jax.rl.visits import VisitTable, future_sums, group_ids, visit_table

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
