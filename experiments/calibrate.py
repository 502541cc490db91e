"""The router threshold for a target cloud-step share, from a dataset's states (offline, RouteLLM-style).

    python experiments/calibrate.py --checkpoint runs/il/<run>/checkpoint --shares 0.2 0.3 0.5
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.serve.calibrate:calibrate", "hera_jax.serve.calibrate:CalibrateConfig")
