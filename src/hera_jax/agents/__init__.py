"""Agent registries: `--agents.device perturbed|perturbed-expert|gguf|gguf-score|llm|llm-score`, `--agents.cloud oracle|expert|openai`.

Stand-ins ("oracle", "perturbed") are for machines where no LLM runs and are labelled "stand-in" everywhere. LLM
agents import their backend lazily, so the stand-ins work without llama-cpp-python, transformers or a server.
Every factory takes one `AgentOptions` (the CLI's agent flags), and reads only the fields it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hera_jax.agents.base import Agent, AgentStep
from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.agents.openai_cloud import OpenAIConfig
from hera_jax.agents.prompting import PromptConfig
from hera_jax.agents.stand_ins import ExpertOracle, GoldPathOracle, PerturbedExpertDevice, PerturbedGoldDevice


@dataclasses.dataclass(frozen=True)
class AgentOptions:
    seed: int = 0  # stand-in mistakes; LLM sampling seed
    model: str = ""  # device LLM: GGUF file (gguf) or local HF directory / cached model id (llm)
    gguf_file: str = ""  # llm only: a GGUF file inside `model` for transformers to dequantize
    n_threads: int = 2
    max_new_tokens: int = 20
    match_cutoff: float = 0.75  # closest-match similarity needed to map a reply onto a valid action
    prompt: PromptConfig = PromptConfig()
    openai: OpenAIConfig = OpenAIConfig()
    memo_dir: str = ""  # gguf-score: folder of its decision memo (the dataset's features folder); "" = no memo


def _perturbed(o: AgentOptions) -> Agent:
    return PerturbedGoldDevice(seed=o.seed)


def _perturbed_expert(o: AgentOptions) -> Agent:
    return PerturbedExpertDevice(seed=o.seed)


def _oracle(o: AgentOptions) -> Agent:
    return GoldPathOracle()


def _expert(o: AgentOptions) -> Agent:
    return ExpertOracle()


def _gguf(o: AgentOptions) -> Agent:
    from hera_jax.agents.gguf_device import GGUFConfig, GGUFDeviceAgent

    config = GGUFConfig(model_path=o.model, n_threads=o.n_threads, max_new_tokens=o.max_new_tokens, seed=o.seed)
    return GGUFDeviceAgent(config, o.prompt, o.match_cutoff)


def _gguf_score(o: AgentOptions) -> Agent:
    from hera_jax.agents.scoring_device import gguf_scoring_device

    return gguf_scoring_device(o.model, o.prompt, n_threads=o.n_threads, memo_dir=o.memo_dir or None)


def _hf_score(o: AgentOptions) -> Agent:
    from hera_jax.agents.scoring_device import hf_scoring_device

    return hf_scoring_device(o.model, o.gguf_file, o.prompt, n_threads=o.n_threads, memo_dir=o.memo_dir or None)


def _hf(o: AgentOptions) -> Agent:
    from hera_jax.agents.hf_device import HFConfig, HFDeviceAgent

    config = HFConfig(model=o.model, gguf_file=o.gguf_file, max_new_tokens=o.max_new_tokens, n_threads=o.n_threads)
    return HFDeviceAgent(config, o.prompt, o.match_cutoff)


def _openai(o: AgentOptions) -> Agent:
    from hera_jax.agents.openai_cloud import OpenAIChatAgent

    return OpenAIChatAgent(o.openai, o.prompt, o.match_cutoff)


CLOUD_AGENTS: dict[str, Callable[[AgentOptions], Agent]] = {"oracle": _oracle, "expert": _expert, "openai": _openai}
DEVICE_AGENTS: dict[str, Callable[[AgentOptions], Agent]] = {
    "perturbed": _perturbed, "perturbed-expert": _perturbed_expert, "gguf": _gguf, "gguf-score": _gguf_score,
    "llm": _hf, "llm-score": _hf_score}
STAND_INS = frozenset({"oracle", "expert", "perturbed", "perturbed-expert"})


def make_agent(role: str, name: str, options: AgentOptions | None = None, **fields: Any) -> Agent:
    """Build an agent by registry name; `fields` are `AgentOptions` fields (e.g. `seed=0`) when no options given."""
    registry = {"cloud": CLOUD_AGENTS, "device": DEVICE_AGENTS}[role]
    if name not in registry:
        raise AgentUnavailableError(f"unknown {role} agent {name!r}; available: {', '.join(sorted(registry))}")
    return registry[name](options if options is not None else AgentOptions(**fields))


__all__ = [
    "Agent",
    "AgentOptions",
    "AgentStep",
    "AgentUnavailableError",
    "CLOUD_AGENTS",
    "DEVICE_AGENTS",
    "ExpertOracle",
    "GoldPathOracle",
    "PerturbedExpertDevice",
    "PerturbedGoldDevice",
    "STAND_INS",
    "make_agent",
]
