"""Stage 2 (cost-aware RL), iterated: start from the IL router, then per iteration roll out the routed hybrid agent
with exploration, group identical states, label each group by the routing choice with the higher return net of
future cloud calls, fine-tune, checkpoint and evaluate on held-out variations.

Default agents are STAND-INS, not LLMs: cloud = the environment's gold action path (oracle), device = the gold path
with state-dependent mistakes. Rerunning with the same --out (or --resume) continues after the last finished iteration.

    python experiments/rl_iter.py --iters 5
    python experiments/rl_iter.py --env textworld_express:twc --iters 3     # or textworld_express:cookingworld
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.rl.rl_app:train_rl", "hera_jax.rl.config:RLConfig")
