# Recipes mirror the README.

# install everything (runtime, rollouts, tests)
setup:
    pip install -e ".[all]"

# the main job on the offline default (ScienceWorld, shipped dataset)
run:
    python experiments/il.py

# regenerate the shipped dataset (resumable)
collect:
    python experiments/collect.py

# the test suite, as CI runs it (on both cores)
test:
    python -m pytest -q -n 2

# the quick loop: everything but whole runs, simulators, LLMs and notebooks
quick:
    python -m pytest -q -n 2 -m "not slow"

# stage 2: cost-aware RL from the IL router, 5 iterations (resumable with --out)
rl:
    python experiments/rl_iter.py --iters 5

# benchmarks at CPU sizes (tables + JSON in benchmarks/results/); GPU rows: bash benchmarks/run_gpu.sh il|rest|sweep
bench:
    python benchmarks/bench_il.py
    python benchmarks/bench_rl.py
    python benchmarks/bench_sweep.py
    python benchmarks/bench_latency.py
    python benchmarks/bench_featurize.py
