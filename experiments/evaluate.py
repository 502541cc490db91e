"""Evaluate routers against baselines: success vs cloud-step ratio frontiers on held-out variations and unseen task
types of one environment (--env: scienceworld, textworld_express:twc, textworld_express:cookingworld), budget
targeting, headline numbers, a plot — or the same recomputed offline from recorded rollouts
(hera_jax.evaluate.evaluate_app).

    python experiments/evaluate.py                                    # IL router of the latest runs/il/* run
    python experiments/evaluate.py --routers il=runs/il/A/checkpoint rl=runs/rl/B/checkpoints@all --cloud-budget 0.3
    python experiments/evaluate.py --env textworld_express:twc --routers twc=runs/il/T/checkpoint sw=runs/il/S/checkpoint
    python experiments/evaluate.py --replay-from runs/evaluate/<ts>   # no agent or simulator is called

The default agents are STAND-INS (cloud = gold-path oracle, device = perturbed gold path), not LLMs; every output
says so.
"""

from hera_jax.cli import run_cli

if __name__ == "__main__":
    run_cli("hera_jax.evaluate.evaluate_app:evaluate", "hera_jax.evaluate.config:EvalConfig")
