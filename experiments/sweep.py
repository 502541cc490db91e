"""Ablation sweep of the router as ONE compiled program: seeds x learning rates x hidden widths x label sources
(hera_jax.sweep_app). Writes sweep.csv (one row per configuration), sweep.json and sweep.png into a new run folder.

    python experiments/sweep.py
    python experiments/sweep.py --grid.seeds 0 1 --grid.learning-rates 1e-3 3e-3

IL-only vs IL+RL labels, and the RL stage's label options: give the rollouts of an RL run (experiments/rl_iter.py)
and the label sources to compare; each cost weight x label rule x group weighting (rl_iter.py's --preference.cost-weight,
--preference.rule, --preference.group-weighting) is one more label variant, trained in the same program.

    python experiments/sweep.py --rl-run runs/rl/<ts> --grid.label-sources il il+rl --grid.cost-weights 0 0.02 0.05
    python experiments/sweep.py --rl-run runs/rl/<ts> --grid.label-sources il il+rl \
        --grid.label-rules linear lexicographic --grid.group-weightings margin uniform class_balanced
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.sweep_app:sweep_experiment", "hera_jax.sweep_config:SweepConfig", start_jax_backend=True)
