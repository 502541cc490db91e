"""Device agent: a GGUF model run in-process by llama-cpp-python (CPU by default).

The prompt is completion-style (works for base and instruction models) and ends in "Action:", so the model
continues with the action; the few-shot prefix stays identical across steps and llama.cpp reuses its KV cache.
With greedy decoding the chosen token is the arg-max, so the logprob of the reply and the mean entropy of the
next-token distributions are read from the logits as they are produced (llama-cpp-python reports logprobs only
with `logits_all=True`, which for Gemma's 262k vocabulary costs gigabytes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hera_jax.agents.base import AgentStep
from hera_jax.agents.llm import AgentUnavailableError, Generation, ParseStats, timed_act
from hera_jax.agents.prompting import PromptConfig, completion_prompt
from hera_jax.state import AgentState

LLAMA_INSTALL = "pip install 'hera_jax[llm]'  (builds llama-cpp-python from source; see the README for the time)"


@dataclasses.dataclass(frozen=True)
class GGUFConfig:
    model_path: str = ""  # empty: the shipped Gemma-3-270M Q4_K_M (see agents/models.py)
    n_ctx: int = 2048
    n_threads: int = 2
    max_new_tokens: int = 20
    temperature: float = 0.0  # greedy: reproducible, and lets us report exact logprobs
    seed: int = 0


class _LogitStats:
    """llama-cpp-python logits processor that records the log-probability of the greedy choice and the entropy."""

    def __init__(self) -> None:
        self.logprob = 0.0
        self.entropies: list[float] = []

    def __call__(self, input_ids, scores):
        logits = np.asarray(scores, dtype=np.float64)
        shifted = logits - logits.max()
        log_z = np.log(np.exp(shifted).sum())
        logp = shifted - log_z
        self.logprob += float(logp.max())
        self.entropies.append(float(-(np.exp(logp) * logp).sum()))
        return scores


class GGUFDeviceAgent:
    """Device agent over llama-cpp-python; `name` carries the model file so results say which LLM acted."""

    is_stand_in = False

    def __init__(self, config: GGUFConfig = GGUFConfig(), prompt: PromptConfig = PromptConfig(),
                 match_cutoff: float = 0.75):
        try:
            from llama_cpp import Llama, LogitsProcessorList
        except ImportError as e:
            raise AgentUnavailableError(f"llama-cpp-python is not installed: {LLAMA_INSTALL}") from e
        from hera_jax.agents.models import default_gguf_path

        path = Path(config.model_path) if config.model_path else default_gguf_path()
        if not path.is_file():
            raise AgentUnavailableError(f"{path}: no such GGUF file; pass --agents.device-model PATH.gguf")
        self.config = config
        self.prompt = prompt
        self.match_cutoff = match_cutoff
        self.model_path = path
        self.name = f"gguf:{path.name}"
        self.parse_stats = ParseStats()
        self._processors = LogitsProcessorList
        self._llm = Llama(model_path=str(path), n_ctx=config.n_ctx, n_threads=config.n_threads, seed=config.seed,
                          verbose=False)

    def generate(self, system: str, user: str) -> Generation:
        text = completion_prompt(system, user)
        prompt_tokens = self._llm.tokenize(text.encode("utf-8"))
        budget = self.config.n_ctx - self.config.max_new_tokens
        if len(prompt_tokens) > budget:  # keep the end (the current state); the few-shot head is what goes
            prompt_tokens = prompt_tokens[-budget:]
        stats = _LogitStats()
        greedy = self.config.temperature == 0.0
        out = self._llm.create_completion(
            prompt_tokens,
            max_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
            stop=["\n"],
            logits_processor=self._processors([stats]) if greedy else None,
            seed=self.config.seed,
        )
        usage = out.get("usage", {})
        return Generation(
            text=out["choices"][0]["text"],
            tokens_in=usage.get("prompt_tokens", len(prompt_tokens)),
            tokens_out=usage.get("completion_tokens"),
            logprob=stats.logprob if greedy and stats.entropies else None,
            entropy=float(np.mean(stats.entropies)) if greedy and stats.entropies else None,
            continued_action=True,
        )

    def act(self, state: AgentState) -> AgentStep:
        return timed_act(self, state)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "llm",
            "backend": "llama-cpp-python",
            "model_file": self.model_path.name,
            "config": {k: v for k, v in dataclasses.asdict(self.config).items() if k != "model_path"},
            "prompt": dataclasses.asdict(self.prompt),
            "match_cutoff": self.match_cutoff,
        }

    def accounting(self) -> dict:
        return {"parse": dataclasses.asdict(self.parse_stats)}
