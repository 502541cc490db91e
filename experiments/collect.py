"""Collect IL trajectories: the cloud agent acts, the device agent is replayed on every cloud state.

Default agents are STAND-INS, not LLMs: cloud = ScienceWorld's gold action path (oracle), device = the gold path
with state-dependent mistakes. Rerunning the same command resumes: finished episodes are kept, none duplicated.

    python experiments/collect.py --out data/scienceworld_standin
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    # a missing env package, data or server prints its install command and exits 2
    run_cli("hera_jax.rollout.collect_app:collect_dataset", "hera_jax.rollout.collect_app:CollectConfig")
