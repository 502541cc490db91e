"""Stage 1 (imitation learning): train the router to predict "needs cloud" from state features.

Loads a collected dataset (default: the shipped ScienceWorld one, collected with STAND-IN agents, see its
manifest), embeds each distinct state once (cached), trains the jitted Flax router with early stopping on dev,
prints dev / test / unseen-task metrics, and writes metrics.json and an orbax checkpoint into a new run folder.

    python experiments/il.py
    python experiments/il.py --env textworld_express:twc
    python experiments/il.py --extra-datasets textworld_express:twc    # one router on ScienceWorld + TWC
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.router.il_app:train_il", "hera_jax.router.il_config:ILConfig", start_jax_backend=True)
