"""hera_jax: step-level device/cloud routing for LLM agents.

The data path, in the order data flows (experiments/*.py are thin command lines over the `*app` modules):

    envs/          simulators behind one `Env` interface; envs/profiles.py: each environment's shipped dataset,
                   task lists, default sizes and options
    agents/        device and cloud agents (stand-ins, local LLMs, OpenAI-compatible endpoints); agents/config.py:
                   the shared `--agents.*` flags and the one builder of the (cloud, device) pair
    rollout/       episodes, routing choosers, records on disk, parallel workers; rollout/collect_app.py: collection
    state.py       the router's state text
    dataset.py     a collected dataset as arrays: splits, unseen tasks, IL labels
    features/      state text -> router input (sentence embeddings + scalars), cached; `FeatureSpec`
    labels.py      the IL label rule ("needs cloud": device and cloud actions differ)
    router/        the Flax router, its jitted trainer, checkpoints; router/il_app.py: stage 1 (IL)
    rl/            stage 2 (cost-aware RL): visits, preference labels, loss, fine-tune, the loop; rl/rl_app.py
    sweep.py       both stages' losses trained over a grid in one compiled program; sweep_app.py: the sweep run
    evaluate/      baselines, online/offline evaluation, frontiers, statistics, reports; evaluate/evaluate_app.py
    research/      tools around the pipeline: diagnosis of routed runs, the irreversible-mistake probe, a real
                   device's own confidence signals
    serve/         the trained router in front of real agents: `Router` (Python API) and `hera-serve`, an
                   OpenAI-compatible step-routing proxy whose decision log is a dataset for stage 2
    columns.py     a dataset's step columns, cached by the records' content hash (the fast load path)
    files.py       JSON written atomically, file digests (every stage's summaries, manifests, caches)
    runs.py        run folders: where new ones go, settings as JSON, the resume check, the lock
    limits.py      declared ranges of config fields, checked when a command line is parsed (cli.py)
    errors.py      `HeraError`: user errors shown as one line
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Router":  # `from hera_jax import Router`, without importing JAX for every `import hera_jax`
        from hera_jax.serve.router_api import Router

        return Router
    raise AttributeError(f"module 'hera_jax' has no attribute {name!r}")
