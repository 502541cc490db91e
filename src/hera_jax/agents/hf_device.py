"""Device agent: a Hugging Face transformers causal LM (PyTorch) from a local directory or a cached model id.

Offline by construction: loading always passes `local_files_only=True`, so a model id that is not in the local
cache fails with a message that says so instead of downloading (HF_HUB_OFFLINE=1 is honoured the same way).
A GGUF file can be loaded too (`gguf_file=`, transformers dequantizes it; needs `gguf` and `accelerate`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hera_jax.agents.base import AgentStep
from hera_jax.agents.llm import AgentUnavailableError, Generation, ParseStats, timed_act
from hera_jax.agents.prompting import PromptConfig, completion_prompt
from hera_jax.state import AgentState


@dataclasses.dataclass(frozen=True)
class HFConfig:
    model: str = ""  # a local directory or a model id already in the local HF cache
    gguf_file: str = ""  # optional GGUF file inside `model` (a directory) to dequantize
    torch_device: str = "cpu"
    dtype: str = "float32"
    max_new_tokens: int = 20
    max_prompt_tokens: int = 2048
    n_threads: int = 2  # torch threads (0: leave torch's default)


def _load(config: HFConfig):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise AgentUnavailableError("transformers/torch missing: pip install 'hera_jax[llm]'") from e
    if not config.model:
        raise AgentUnavailableError("--agents.device llm needs --agents.device-model: a local model directory or a cached model id")
    extra = {"gguf_file": config.gguf_file} if config.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model, local_files_only=True, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            config.model, local_files_only=True, dtype=getattr(torch, config.dtype), **extra
        )
    except (OSError, ValueError) as e:
        where = "directory" if Path(config.model).is_dir() else "model id"
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise AgentUnavailableError(
            f"cannot load {where} {config.model!r} from local files{offline}: {e.__class__.__name__}: "
            f"{str(e).splitlines()[0][:300]}. hera_jax never downloads models at run time: pass a local directory "
            "with config.json, tokenizer and weights, or a model id already in the local Hugging Face cache."
        ) from e
    model.to(config.torch_device).eval()
    return tokenizer, model


class HFDeviceAgent:
    is_stand_in = False

    def __init__(self, config: HFConfig = HFConfig(), prompt: PromptConfig = PromptConfig(),
                 match_cutoff: float = 0.75):
        import torch

        if config.n_threads > 0:
            torch.set_num_threads(config.n_threads)
        self.config = config
        self.prompt = prompt
        self.match_cutoff = match_cutoff
        self.parse_stats = ParseStats()
        self.tokenizer, self.model = _load(config)
        label = Path(config.model).name if Path(config.model).is_dir() else config.model
        self.name = f"hf:{label}" + (f":{config.gguf_file}" if config.gguf_file else "")
        self._torch = torch

    def generate(self, system: str, user: str) -> Generation:
        torch = self._torch
        text = completion_prompt(system, user)
        ids = self.tokenizer(text, return_tensors="pt").input_ids[:, -self.config.max_prompt_tokens:]
        ids = ids.to(self.config.torch_device)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                stopping_criteria=[self._newline_stop(ids.shape[1])],
            )
        new_tokens = out.sequences[0, ids.shape[1]:]
        logprob, entropies = 0.0, []
        for token, scores in zip(new_tokens.tolist(), out.scores):
            logp = torch.log_softmax(scores[0].float(), dim=-1)
            logprob += float(logp[token])
            entropies.append(float(-(logp.exp() * logp).sum()))
        return Generation(
            text=self.tokenizer.decode(new_tokens, skip_special_tokens=True),
            tokens_in=int(ids.shape[1]),
            tokens_out=int(new_tokens.shape[0]),
            logprob=logprob if entropies else None,
            entropy=sum(entropies) / len(entropies) if entropies else None,
            continued_action=True,
        )

    def _newline_stop(self, prompt_length: int):
        """Stop once the reply has a newline: one action line is all we parse (transformers' `stop_strings`
        breaks on some tokenizers' vocabularies)."""
        from transformers import StoppingCriteria

        tokenizer, torch = self.tokenizer, self._torch

        class NewlineStop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                done = ["\n" in tokenizer.decode(row[prompt_length:], skip_special_tokens=True) for row in input_ids]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        return NewlineStop()

    def act(self, state: AgentState) -> AgentStep:
        return timed_act(self, state)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "llm",
            "backend": "transformers",
            "config": dataclasses.asdict(self.config),
            "prompt": dataclasses.asdict(self.prompt),
            "match_cutoff": self.match_cutoff,
        }

    def accounting(self) -> dict:
        return {"parse": dataclasses.asdict(self.parse_stats)}
