"""Collect IL trajectories: the cloud agent acts, the device agent is replayed on every cloud state.

Default agents are STAND-INS, not LLMs: cloud = ScienceWorld's gold action path (oracle), device = the gold path
with state-dependent mistakes. Rerunning the same command resumes: finished episodes are kept, none duplicated.

    python experiments/collect.py --out data/scienceworld_standin
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import sys
from pathlib import Path
from typing import ClassVar

from hera_jax.agents import AgentOptions, make_agent
from hera_jax.agents.openai_cloud import OpenAIConfig, env_name_problem, secret_problem, url_problem
from hera_jax.cli import run_cli
from hera_jax.envs import make_env
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, Check
from hera_jax.rollout.collect import COLLECT_POLICY, agents_manifest, collect, plan_episodes
from hera_jax.rollout.engine import EngineConfig, Policy, WorkerSetup
from hera_jax.rollout.episode import EpisodeSettings, always
from hera_jax.rollout.records import now_iso
from hera_jax.runs import config_json, locked_run_dir

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_TASKS = (
    "boil",
    "change-the-state-of-matter-of",
    "chemistry-mix",
    "chemistry-mix-paint-secondary-color",
    "find-animal",
    "find-plant",
    "freeze",
    "lifespan-longest-lived",
    "measure-melting-point-known-substance",
    "power-component",
    "test-conductivity",
    "use-thermometer",
    # held out entirely from training by experiments/il.py (unseen-task test split):
    "melt",
    "chemistry-mix-paint-tertiary-color",
)


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Collect cloud trajectories with the device replayed on every state (paper stage 1 data)."""

    out: Path = ROOT / "data" / "scienceworld_standin"
    """Dataset folder; steps.jsonl is appended to and manifest.json records how it was made."""
    env: str = "scienceworld"
    """Environment registry name."""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    """Task names to collect; the default lists 14 ScienceWorld tasks and means "all tasks" for any other --env."""
    train_per_task: int = 12
    """Variations per task from the environment's train split."""
    dev_per_task: int = 4
    """Variations per task from the dev split."""
    test_per_task: int = 4
    """Variations per task from the test split."""
    cloud: str = "oracle"
    """Cloud agent: 'oracle' = STAND-IN that follows the gold action path (not an LLM)."""
    device: str = "perturbed"
    """Device agent: 'perturbed' = STAND-IN, gold path with state-dependent mistakes (not an LLM)."""
    device_seed: int = 0
    """Seed of the perturbed device stand-in's mistakes."""
    device_model: str = ""
    """--device gguf: a .gguf file (default: the shipped Gemma-3-270M Q4_K_M); --device llm: a local HF model
    directory or a model id already in the local HF cache (nothing is downloaded)."""
    device_gguf_file: str = ""
    """--device llm only: a GGUF file inside --device-model for transformers to load."""
    device_threads: int = 2
    """CPU threads of the device LLM."""
    max_new_tokens: int = 20
    """Reply-token cap of the device LLM."""
    cloud_base_url: str = "http://127.0.0.1:8000/v1"
    """--cloud openai: the OpenAI-compatible endpoint (Qwen-Max, vLLM, Ollama, llama.cpp server)."""
    cloud_model: str = "default"
    """--cloud openai: model name sent to the endpoint."""
    cloud_api_key_env: str = "OPENAI_API_KEY"
    """--cloud openai: NAME of the environment variable holding the API key (the key is never written anywhere)."""
    cloud_max_calls: int = 1000
    """--cloud openai: hard cap on requests sent in this run (retries count)."""
    cloud_max_tokens: int = 2_000_000
    """--cloud openai: hard cap on prompt+completion tokens in this run."""
    cloud_timeout_s: float = 60.0
    """--cloud openai: deadline of one request, from connecting to the last byte of the reply."""
    cloud_max_call_s: float = 120.0
    """--cloud openai: deadline of one call over all its retries (a dead endpoint costs at most this per step)."""
    cloud_max_reply_tokens: int = 48
    """--cloud openai: reply-token cap per call."""
    cloud_price_in: float = 0.0
    """--cloud openai: USD per million prompt tokens (cost accounting)."""
    cloud_price_out: float = 0.0
    """--cloud openai: USD per million completion tokens."""
    mode: str = "replay"
    """Who acts: 'replay' = cloud acts and the device is replayed on every state (IL data); 'cloud' or 'device'
    = that agent alone."""
    workers: int = 1
    """>1: run episodes in parallel on Ray workers (each with its own simulators and agents; budgets are split)."""
    batch_size: int = 1
    """Episodes each worker steps together in lockstep, one simulator each."""
    ray_address: str = ""
    """Ray cluster address; empty starts a local Ray."""
    max_seconds: float = 0.0
    """Per-episode wall-clock limit in seconds (0: none)."""
    env_call_timeout_s: float = 120.0
    """A simulator call taking longer is a hang: the simulator is killed and the episode redone."""
    max_episode_retries: int = 2
    """Restarts of a crashed/hung simulator per episode before giving up."""
    fresh_env_per_episode: bool | None = None
    """A new simulator for every episode; None: only where reuse would change the records (ScienceWorld: its
    episodes depend on the JVM's history; TextWorldExpress is reused)."""
    history_k: int = 3
    """Number of past (action, observation) pairs in the router's state text."""
    max_obs_chars: int = 400
    """Observations are clipped to this many characters in the state text."""
    max_steps: int = 60
    """Per-episode step limit."""
    simplification: str = "easy"
    """ScienceWorld simplification string."""
    progress: bool = True
    """Show a progress bar."""

    LIMITS: ClassVar[dict] = {
        "train_per_task": NON_NEGATIVE, "dev_per_task": NON_NEGATIVE, "test_per_task": NON_NEGATIVE,
        "device_threads": COUNT, "max_new_tokens": COUNT, "cloud_base_url": Check(url_problem, echo=False),
        "cloud_model": Check(secret_problem, echo=False), "cloud_api_key_env": Check(env_name_problem, echo=False),
        "cloud_max_calls": COUNT, "cloud_max_tokens": COUNT, "cloud_timeout_s": POSITIVE,
        "cloud_max_call_s": POSITIVE, "cloud_max_reply_tokens": COUNT, "cloud_price_in": NON_NEGATIVE,
        "cloud_price_out": NON_NEGATIVE, "workers": COUNT, "max_seconds": NON_NEGATIVE,
        "env_call_timeout_s": POSITIVE, "max_episode_retries": NON_NEGATIVE, "history_k": NON_NEGATIVE,
        "max_obs_chars": COUNT, "max_steps": COUNT,
    }


def main(config: CollectConfig) -> None:
    with locked_run_dir(config.out, "collect.py run into this dataset"):
        collect_into(config)


def collect_into(config: CollectConfig) -> None:
    """Collect into the dataset folder `config.out` (locked)."""
    env_options = {"simplification": config.simplification} if config.env == "scienceworld" else {}  # SW-only knob
    env = make_env(config.env, step_limit=config.max_steps + 10, **env_options)
    tasks = config.tasks if config.env == "scienceworld" or config.tasks != DEFAULT_TASKS else env.task_names()
    if config.mode not in MODES:
        raise SystemExit(f"error: --mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    try:
        # in-process, the worker uses these agents; Ray workers build their own with a share of the cloud budget
        setup = worker_setup(config, options_share=1)
        cloud, device = setup.cloud, setup.device
        per_split = {"train": config.train_per_task, "dev": config.dev_per_task, "test": config.test_per_task}
        specs = plan_episodes(env, tasks, per_split, mode=MODES[config.mode][0], seed=config.device_seed)
        settings = config_json(config)
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
            "command": "python experiments/collect.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        }
        engine = EngineConfig(batch_size=config.batch_size, workers=config.workers, ray_address=config.ray_address,
                              env_call_timeout_s=config.env_call_timeout_s,
                              max_episode_retries=config.max_episode_retries,
                              fresh_env_per_episode=config.fresh_env_per_episode)
        make_setup = functools.partial(worker_setup, config, max(config.workers, 1))
        summary = collect(specs, make_setup, config.out, manifest, engine, show_progress=config.progress,
                          setup=setup if config.workers == 1 else None)
    finally:
        env.close()
    print(
        f"{config.out}: {summary['num_episodes']} episodes, {summary['num_steps']} steps "
        f"({summary['new_episodes']} new, {summary['skipped_existing']} already there); "
        f"{config.mode} success {summary['success_rate']:.1%} [cloud={cloud.name}, device={device.name}"
        f"{'; stand-ins' if cloud.is_stand_in or device.is_stand_in else ''}]"
    )
    for role, numbers in summary.get("llm", {}).items():
        print(f"  {role} LLM: {numbers}")


MODES = {  # --mode -> (episode-id tag, manifest description)
    "replay": ("cloud+device-replay", "cloud acts; device replayed on every cloud state (IL)"),
    "cloud": ("cloud-only", "cloud acts alone"),
    "device": ("device-only", "device acts alone"),
}
# Flags that change how a run goes, not what it records: never part of the dataset's identity.
RUN_ONLY = ("workers", "batch_size", "ray_address", "env_call_timeout_s", "max_episode_retries", "fresh_env_per_episode",
            "cloud_api_key_env",
            "cloud_max_calls", "cloud_max_tokens", "cloud_timeout_s", "cloud_max_call_s", "cloud_price_in", "cloud_price_out")
AGENT_KNOB_DEFAULTS = {"device_model": "", "device_gguf_file": "", "device_threads": 2, "max_new_tokens": 20,
                       "cloud_base_url": "http://127.0.0.1:8000/v1", "cloud_model": "default", "mode": "replay",
                       "cloud_max_reply_tokens": 48,
                       "max_seconds": 0.0}


def agent_options(config: CollectConfig, share: int) -> AgentOptions:
    """The agent flags as `AgentOptions`; with `share` parallel workers each gets 1/share of the cloud budget."""
    openai = OpenAIConfig(
        base_url=config.cloud_base_url, model=config.cloud_model, api_key_env=config.cloud_api_key_env,
        timeout_s=config.cloud_timeout_s, max_call_s=config.cloud_max_call_s, max_reply_tokens=config.cloud_max_reply_tokens,
        max_calls=config.cloud_max_calls // share,
        max_total_tokens=config.cloud_max_tokens // share, price_in_per_mtok=config.cloud_price_in,
        price_out_per_mtok=config.cloud_price_out,
    )
    return AgentOptions(seed=config.device_seed, model=config.device_model, gguf_file=config.device_gguf_file,
                        n_threads=config.device_threads, max_new_tokens=config.max_new_tokens, openai=openai)


def worker_setup(config: CollectConfig, options_share: int) -> WorkerSetup:
    """How a (Ray or in-process) worker builds its own simulators and agents."""
    env_options = {"simplification": config.simplification} if config.env == "scienceworld" else {}
    options = agent_options(config, options_share)
    return WorkerSetup(
        make_env=functools.partial(make_env, config.env, step_limit=config.max_steps + 10, **env_options),
        cloud=make_agent("cloud", config.cloud, options),
        device=make_agent("device", config.device, options),
        policies={COLLECT_POLICY: Policy(always("device" if config.mode == "device" else "cloud"))},
        settings=EpisodeSettings(replay="device" if config.mode == "replay" else None, history_k=config.history_k,
                                 max_obs_chars=config.max_obs_chars, max_steps=config.max_steps,
                                 max_seconds=config.max_seconds if config.max_seconds > 0 else None),
    )


if __name__ == "__main__":
    run_cli(main, CollectConfig)  # a missing env package/data/server prints its install command and exits 2
