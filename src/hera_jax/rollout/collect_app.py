"""Collect IL trajectories as one run (experiments/collect.py is its command line): the cloud agent acts, the device
agent is replayed on every cloud state.

Default agents are STAND-INS, not LLMs: cloud = the gold action path (oracle), device = the gold path with
state-dependent mistakes. Rerunning the same command resumes: finished episodes are kept, none duplicated.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import sys
from pathlib import Path
from typing import ClassVar

from hera_jax.agents.config import AgentsConfig, build_agents
from hera_jax.agents.openai_cloud import redact_command
from hera_jax.envs import check_env_name, simulator_factory
from hera_jax.envs.profiles import profile
from hera_jax.dataset import manifest_agents_title
from hera_jax.limits import COUNT, NON_NEGATIVE
from hera_jax.rollout.collect import COLLECT_POLICY, agents_manifest, collect, plan_episodes
from hera_jax.rollout.engine import EngineConfig, Policy, WorkerSetup
from hera_jax.rollout.episode import DEFAULT_HISTORY_K, DEFAULT_MAX_OBS_CHARS, DEFAULT_MAX_STEPS, EpisodeSettings, always
from hera_jax.rollout.records import now_iso
from hera_jax.runs import RUNS_ROOT, config_json, locked_run_dir, new_run_dir


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Collect cloud trajectories with the device replayed on every state (paper stage 1 data)."""

    out: Path | None = None
    """Dataset folder; steps.jsonl is appended to and manifest.json records how it was made (default: a new
    runs/collect/<timestamp>; pass a shipped dataset's folder, e.g. data/scienceworld_standin, to regenerate or
    extend it)."""
    env: str = "scienceworld"
    """Environment registry name."""
    tasks: tuple[str, ...] | None = None
    """Task names to collect (default: the environment profile's, e.g. 14 ScienceWorld tasks; else all tasks)."""
    train_per_task: int = 12
    """Variations per task from the environment's train split."""
    dev_per_task: int = 4
    """Variations per task from the dev split."""
    test_per_task: int = 4
    """Variations per task from the test split."""
    agents: AgentsConfig = AgentsConfig()
    """Cloud and device agents (default: STAND-INS, not LLMs), their endpoints, budgets, prices and deadlines."""
    mode: str = "replay"
    """Who acts: 'replay' = cloud acts and the device is replayed on every state (IL data); 'cloud' or 'device'
    = that agent alone."""
    engine: EngineConfig = EngineConfig()
    """How the episodes run (lockstep batch size, Ray workers with split cloud budgets, simulator watchdog); never
    changes the records."""
    max_seconds: float = 0.0
    """Per-episode wall-clock limit in seconds (0: none)."""
    history_k: int = DEFAULT_HISTORY_K
    """Number of past (action, observation) pairs in the router's state text."""
    max_obs_chars: int = DEFAULT_MAX_OBS_CHARS
    """Observations are clipped to this many characters in the state text."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Per-episode step limit."""
    simplification: str = "easy"
    """ScienceWorld simplification string (environments without this option ignore it)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        # the environment's default Ray workers, resolved here so every user of the config sees a number
        object.__setattr__(self, "engine", self.engine.with_defaults(1, profile(self.env).engine_workers))

    KEPT_ON_INTERRUPT: ClassVar[str] = "finished episodes are kept"  # what a Ctrl-C leaves (cli.py)
    LIMITS: ClassVar[dict] = {
        "train_per_task": NON_NEGATIVE, "dev_per_task": NON_NEGATIVE, "test_per_task": NON_NEGATIVE,
        "max_seconds": NON_NEGATIVE, "history_k": NON_NEGATIVE,
        "max_obs_chars": COUNT, "max_steps": COUNT,
    }


def collect_dataset(config: CollectConfig) -> None:
    """Collect into (or resume) the dataset folder `config.out`, locked against a second collection."""
    check_env_name(config.env)
    if config.out is None:  # never the shipped dataset by default: extending it is a choice made with --out
        config = dataclasses.replace(config, out=new_run_dir(RUNS_ROOT, "collect"))
        print(f"collecting into {config.out} (rerun with --out {shlex.quote(str(config.out))} to resume)")
    with locked_run_dir(config.out, "collect.py run into this dataset"):
        collect_into(config)


def collect_into(config: CollectConfig) -> None:
    """Collect into the dataset folder `config.out` (locked)."""
    env_profile = profile(config.env)
    env_options = env_profile.env_options(simplification=config.simplification)
    env = simulator_factory(config.env, config.max_steps, **env_options)()
    tasks = config.tasks or env_profile.collect_tasks or env.task_names()
    if config.mode not in MODES:
        raise SystemExit(f"error: --mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    try:
        # in-process, the worker uses these agents; Ray workers build their own with a share of the cloud budget
        setup = worker_setup(config, options_share=1)
        cloud, device = setup.cloud, setup.device
        per_split = {"train": config.train_per_task, "dev": config.dev_per_task, "test": config.test_per_task}
        specs = plan_episodes(env, tasks, per_split, mode=MODES[config.mode][0], seed=config.agents.seed())
        settings = manifest_settings(config)
        for volatile in ("out", "progress", "tasks", "train_per_task", "dev_per_task", "test_per_task", *RUN_ONLY):
            settings.pop(volatile)  # more tasks/variations may be added to a dataset later; these don't change it
        for knob, default in AGENT_KNOB_DEFAULTS.items():
            if settings.get(knob) == default:
                settings.pop(knob)  # datasets collected before these flags existed keep resuming
        manifest = {
            "env": {"name": env.name, "version": env.version, **env_options,
                    **({"observation_format": env.observation_format} if hasattr(env, "observation_format") else {})},
            "agents": agents_manifest(cloud, device),
            "settings": settings,
            "mode": MODES[config.mode][1],
            "created": now_iso(),
            "command": redact_command(["python", "experiments/collect.py", *sys.argv[1:]]),
        }
        make_setup = functools.partial(worker_setup, config, config.engine.workers)
        summary = collect(specs, make_setup, config.out, manifest, config.engine, show_progress=config.progress,
                          setup=setup if config.engine.workers == 1 else None)
    finally:
        env.close()
    print(
        f"{config.out}: {summary['num_episodes']} episodes, {summary['num_steps']} steps "
        f"({summary['new_episodes']} new, {summary['skipped_existing']} already there); "
        f"{config.mode} success {summary['success_rate']:.1%} "
        f"[{manifest_agents_title(agents_manifest(cloud, device)).removeprefix('agents: ')}]"
    )
    for role, numbers in summary.get("llm", {}).items():
        # dataset totals: a resumed run that added nothing made none of these calls
        print(f"  {role} LLM, all {summary['num_episodes']} episodes of the dataset "
              f"({summary['new_episodes']} collected by this run): {numbers}")
        if numbers["unparseable_replies"]:  # such a step's action is the fallback, not the model's
            print(f"warning: {numbers['unparseable_replies']} of {numbers['llm_steps']} {role} replies could not be "
                  f"parsed into a valid action (the rows' {role}_parse_ok is false)", file=sys.stderr)


MODES = {  # --mode -> (episode-id tag, manifest description)
    "replay": ("cloud+device-replay", "cloud acts; device replayed on every cloud state (IL)"),
    "cloud": ("cloud-only", "cloud acts alone"),
    "device": ("device-only", "device acts alone"),
}
# Flags that change how a run goes, not what it records: never part of the dataset's identity.
RUN_ONLY = ("engine", *AgentsConfig.RUN_ONLY)
AGENT_KNOB_DEFAULTS = {"device_model": "", "device_gguf_file": "", "device_threads": 2, "max_new_tokens": 20,
                       "cloud_base_url": "http://127.0.0.1:8000/v1", "cloud_model": "default", "mode": "replay",
                       "cloud_max_reply_tokens": 48,
                       "max_seconds": 0.0}


def manifest_settings(config: CollectConfig) -> dict:
    """The config as the manifest's flat `settings` (the agent flags at top level, as before they were nested,
    so datasets collected then still resume)."""
    settings = config_json(config)
    settings.update(settings.pop("agents"), device_seed=config.agents.seed())
    return settings


def worker_setup(config: CollectConfig, options_share: int) -> WorkerSetup:
    """How a (Ray or in-process) worker builds its own simulators and agents."""
    env_options = profile(config.env).env_options(simplification=config.simplification)
    cloud, device = build_agents(config.agents, config.env, share=options_share, memo_dir=config.out / "features")
    return WorkerSetup(
        make_env=simulator_factory(config.env, config.max_steps, **env_options),
        cloud=cloud,
        device=device,
        policies={COLLECT_POLICY: Policy(always("device" if config.mode == "device" else "cloud"))},
        settings=EpisodeSettings(replay="device" if config.mode == "replay" else None, history_k=config.history_k,
                                 max_obs_chars=config.max_obs_chars, max_steps=config.max_steps,
                                 max_seconds=config.max_seconds if config.max_seconds > 0 else None),
    )
