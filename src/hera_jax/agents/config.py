"""The agent flags shared by every command that runs agents (collect, RL, evaluate): `--agents.cloud`,
`--agents.cloud-base-url`, ... and the one builder from them to the (cloud, device) pair."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from collections.abc import Callable
from typing import ClassVar

from hera_jax.agents import AgentOptions, make_agent
from hera_jax.agents.base import Agent
from hera_jax.agents.openai_cloud import OpenAIConfig, env_name_problem, secret_problem, url_problem
from hera_jax.envs.profiles import profile
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, Check


@dataclasses.dataclass(frozen=True)
class AgentsConfig:
    """Which cloud and device agents act, and the LLM endpoints, budgets, prices and deadlines they use."""

    cloud: str = "oracle"
    """Cloud agent: 'oracle' = STAND-IN (not an LLM) that follows the environment's reference policy: the gold
    action path, or where the environment has a re-planning expert (ALFWorld) that expert ('expert'); 'openai' = an
    OpenAI-compatible LLM endpoint."""
    device: str = "perturbed"
    """Device agent: 'perturbed' = STAND-IN (not an LLM), the oracle's reference policy with state-dependent
    mistakes ('perturbed-expert' on ALFWorld); 'gguf'/'llm' = a local LLM that writes its action; 'gguf-score' =
    a local GGUF LLM (default: the shipped Gemma-3-270M) that ranks every valid action by its likelihood."""
    device_seed: int | None = None
    """Seed of the device agent (the stand-in's mistakes; an LLM's sampling). Default: 0 when collecting and in RL;
    the dataset's in evaluation (so the stand-in device is the one the router learned)."""
    device_model: str = ""
    """--agents.device gguf: a .gguf file (default: the shipped Gemma-3-270M Q4_K_M); --agents.device llm: a local
    HF model directory or a model id already in the local HF cache (nothing is downloaded)."""
    device_gguf_file: str = ""
    """--agents.device llm only: a GGUF file inside --agents.device-model for transformers to load."""
    device_threads: int = 2
    """CPU threads of the device LLM."""
    device_memo_dir: Path | None = None
    """--agents.device gguf-score: folder of its decision memo (default: the dataset's features folder)."""
    max_new_tokens: int = 20
    """Reply-token cap of the device LLM."""
    cloud_base_url: str = "http://127.0.0.1:8000/v1"
    """--agents.cloud openai: the OpenAI-compatible endpoint (Qwen-Max, vLLM, Ollama, llama.cpp server)."""
    cloud_model: str = "default"
    """--agents.cloud openai: model name sent to the endpoint."""
    cloud_api_key_env: str = "OPENAI_API_KEY"
    """--agents.cloud openai: NAME of the environment variable holding the API key (the key is never written)."""
    cloud_max_calls: int = 1000
    """--agents.cloud openai: hard cap on requests sent in this run (retries count; split over parallel workers)."""
    cloud_max_tokens: int = 2_000_000
    """--agents.cloud openai: hard cap on prompt+completion tokens in this run (split over parallel workers)."""
    cloud_timeout_s: float = 60.0
    """--agents.cloud openai: deadline of one request, from connecting to the last byte of the reply."""
    cloud_max_call_s: float = 120.0
    """--agents.cloud openai: deadline of one call over all its retries (a dead endpoint costs at most this)."""
    cloud_max_reply_tokens: int = 48
    """--agents.cloud openai: reply-token cap per call."""
    cloud_price_in: float = 0.0
    """--agents.cloud openai: USD per million prompt tokens (cost accounting)."""
    cloud_price_out: float = 0.0
    """--agents.cloud openai: USD per million completion tokens."""

    LIMITS: ClassVar[dict] = {
        "device_threads": COUNT, "max_new_tokens": COUNT, "cloud_base_url": Check(url_problem, echo=False),
        "cloud_model": Check(secret_problem, echo=False), "cloud_api_key_env": Check(env_name_problem, echo=False),
        "cloud_max_calls": COUNT, "cloud_max_tokens": COUNT, "cloud_timeout_s": POSITIVE,
        "cloud_max_call_s": POSITIVE, "cloud_max_reply_tokens": COUNT, "cloud_price_in": NON_NEGATIVE,
        "cloud_price_out": NON_NEGATIVE,
    }
    # Fields that change how a run goes (budgets, deadlines, prices, where the key is), not what it records.
    RUN_ONLY: ClassVar[tuple[str, ...]] = ("device_memo_dir", "cloud_api_key_env", "cloud_max_calls",
                                           "cloud_max_tokens",
                                           "cloud_timeout_s", "cloud_max_call_s", "cloud_price_in", "cloud_price_out")

    def seed(self, default: int = 0) -> int:
        return default if self.device_seed is None else self.device_seed

    def options(self, share: int = 1, default_seed: int = 0, memo_dir: Path | None = None) -> AgentOptions:
        """The flags as `AgentOptions`; with `share` parallel workers each gets 1/share of the cloud budget;
        `memo_dir` is where a memoizing device keeps its decisions unless --agents.device-memo-dir says."""
        openai = OpenAIConfig(
            base_url=self.cloud_base_url, model=self.cloud_model, api_key_env=self.cloud_api_key_env,
            timeout_s=self.cloud_timeout_s, max_call_s=self.cloud_max_call_s,
            max_reply_tokens=self.cloud_max_reply_tokens, max_calls=self.cloud_max_calls // share,
            max_total_tokens=self.cloud_max_tokens // share, price_in_per_mtok=self.cloud_price_in,
            price_out_per_mtok=self.cloud_price_out,
        )
        return AgentOptions(seed=self.seed(default_seed), model=self.device_model, gguf_file=self.device_gguf_file,
                            n_threads=self.device_threads, max_new_tokens=self.max_new_tokens, openai=openai,
                            memo_dir=str(self.device_memo_dir or memo_dir or ""))


def agent_factories(config: AgentsConfig, env: str, share: int = 1, default_seed: int = 0,
                    memo_dir: Path | None = None) -> tuple[Callable[[], Agent], Callable[[], Agent]]:
    """Picklable (make_cloud, make_device) from the flags, for workers that build their own agents; with `share`
    parallel workers each gets 1/share of the cloud budget. The stand-in names resolve through the environment's
    profile (`oracle` is ALFWorld's re-planning expert). `memo_dir`: the dataset's features folder, where a
    memoizing device keeps its decisions."""
    options = config.options(share, default_seed, memo_dir)
    stand_ins = dict(profile(env).stand_ins)
    return (functools.partial(make_agent, "cloud", stand_ins.get(config.cloud, config.cloud), options),
            functools.partial(make_agent, "device", stand_ins.get(config.device, config.device), options))


def build_agents(config: AgentsConfig, env: str, share: int = 1, default_seed: int = 0,
                 memo_dir: Path | None = None) -> tuple[Agent, Agent]:
    """(cloud, device) built from the flags for `env`; every command that runs agents builds them here."""
    make_cloud, make_device = agent_factories(config, env, share, default_seed, memo_dir)
    return make_cloud(), make_device()
