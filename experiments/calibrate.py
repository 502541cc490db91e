"""The router threshold for a target cloud-step share, from a dataset's states (offline, RouteLLM-style).

    python experiments/calibrate.py --checkpoint runs/il/<run>/checkpoint --shares 0.2 0.3 0.5
"""

from hera_jax.cli import run_cli
from hera_jax.serve.calibrate import CalibrateConfig, calibrate

if __name__ == "__main__":
    run_cli(calibrate, CalibrateConfig)
