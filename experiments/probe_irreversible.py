"""Which stand-in device mistakes cannot be walked back? Evidence for the `bayes-harm` baseline's rule
(hera_jax.research.probe_app).

    python experiments/probe_irreversible.py --env scienceworld --tasks find-animal chemistry-mix use-thermometer
    python experiments/probe_irreversible.py --env textworld_express:twc
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.research.probe_app:probe_mistakes", "hera_jax.research.probe_app:ProbeConfig")
