"""Diagnose why the IL router does (not) beat random step routing (issue 12), with STAND-IN agents only: sections
il-states, routed, features, harm-router, capped (hera_jax.research.diagnose_app says what each does).

    python experiments/diagnose.py --env textworld_express:twc --eval-run /tmp/evalstats/twc2 \
        --router /tmp/evalstats_il_twc/checkpoint --out runs/diagnose/twc
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.research.diagnose_app:diagnose", "hera_jax.research.diagnose_app:DiagnoseConfig")
