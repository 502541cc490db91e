"""Score candidate actions with a transformers causal LM: the prompt once (the model's KV cache), candidates batched.

The prompt's KV cache is computed once per state and repeated along the batch for the candidates, which run as one
padded batch (right padding; a candidate's pad positions are masked and never scored). Loading is local-only, like
`hf_device.py`: a model id not in the local cache fails with a message instead of downloading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hera_jax.agents.gguf_scorer import CANDIDATE_END


class HFActionScorer:
    """`score(prompt, actions)` -> length-normalised log-likelihood of each action after `prompt`."""

    backend = "transformers"

    def __init__(self, model: str, gguf_file: str = "", n_threads: int = 2, max_prompt_tokens: int = 2048,
                 max_batch: int = 64):
        import torch

        from hera_jax.agents.hf_device import HFConfig, _load

        if n_threads > 0:
            torch.set_num_threads(n_threads)
        self._torch = torch
        self.tokenizer, self.model = _load(HFConfig(model=model, gguf_file=gguf_file))
        self.max_prompt_tokens = max_prompt_tokens
        self.max_batch = max_batch
        self.prompt_tokens_evaluated = 0
        self.decode_calls = 0

    def prompt_tokens(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt).input_ids

    def action_tokens(self, action: str) -> list[int]:
        return self.tokenizer(f" {action}{CANDIDATE_END}", add_special_tokens=False).input_ids

    def score(self, prompt: str, actions: Sequence[str]) -> tuple[np.ndarray, int]:
        if not actions:
            raise ValueError("no candidate actions to score")
        torch = self._torch
        tokens = self.prompt_tokens(prompt)[-self.max_prompt_tokens:]
        candidates = [self.action_tokens(a) for a in actions]
        scores = np.empty(len(actions))
        with torch.no_grad():
            prompt_ids = torch.tensor([tokens])
            out = self.model(input_ids=prompt_ids, use_cache=True)
            self.prompt_tokens_evaluated += len(tokens)
            self.decode_calls += 1
            root = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            for start in range(0, len(candidates), self.max_batch):
                chunk = candidates[start:start + self.max_batch]
                width = max(len(c) for c in chunk)
                ids = torch.zeros((len(chunk), width), dtype=torch.long)
                mask = torch.zeros((len(chunk), len(tokens) + width), dtype=torch.long)
                mask[:, :len(tokens)] = 1
                for i, c in enumerate(chunk):
                    ids[i, :len(c)] = torch.tensor(c)
                    mask[i, len(tokens):len(tokens) + len(c)] = 1
                cache = _repeat_cache(out.cache, len(chunk))
                positions = torch.arange(len(tokens), len(tokens) + width).unsqueeze(0).expand(len(chunk), -1)
                logits = self.model(input_ids=ids, attention_mask=mask, cache=cache, position_ids=positions,
                                    use_cache=True).logits
                self.decode_calls += 1
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                for i, c in enumerate(chunk):
                    per_token = [float(root[c[0]])] + [float(logprobs[i, j, c[j + 1]]) for j in range(len(c) - 1)]
                    scores[start + i] = np.mean(per_token)
        return scores, len(tokens)


def _repeat_cache(cache, copies: int):
    """The prompt's KV cache repeated along the batch (a fresh copy: the candidate pass appends to it)."""
    import copy

    repeated = copy.deepcopy(cache)
    repeated.batch_repeat_interleave(copies)
    return repeated
