"""AUROC of the real device's confidence signals and a router's p_cloud for "needs cloud" on a dataset's states.

    python experiments/device_signals.py --dataset data/textworld_express_twc_gemma270m --routers runs/il/twc_gemma/checkpoint
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.research.device_signals:device_signals", "hera_jax.research.device_signals:DeviceSignalsConfig")
