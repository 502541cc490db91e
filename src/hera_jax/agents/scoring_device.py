"""The scoring device agent: rank every valid action with a local LLM and take the best, so no action is invalid.

The backend (`gguf_scorer.LlamaActionScorer`, llama.cpp, the default; or `hf_scorer.HFActionScorer`,
transformers) only scores; the prompt, the ranking, the confidence fields and the memo live here once. The agent is
deterministic, so its decisions are memoized by (model hash, prompt design, prompt, candidates) in a
`DecisionMemo`: every distinct state pays for the model once across collection, RL and every evaluation point, and
a memo hit returns the stored decision unchanged (latency included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hera_jax.agents.base import AgentStep
from hera_jax.agents.memo import DecisionMemo, decision_key
from hera_jax.agents.prompting import PromptConfig, build_prompt, completion_prompt
from hera_jax.agents.scoring import rank
from hera_jax.state import AgentState

SCORE_DESIGN = "score-v1"  # bump when the scoring rule changes: memoized decisions of another rule are not reused
TOP_K = 5  # (action, score) pairs kept per decision


def memo_path(memo_dir: str | Path, model_label: str) -> Path:
    """The decision memo of a model inside `memo_dir` (a dataset's features folder)."""
    return Path(memo_dir) / f"device_decisions_{model_label}.jsonl"


def model_fingerprint(path: Path) -> str:
    """sha256 of a model file, or of a model directory's files (names, sizes and contents)."""
    from hera_jax.files import sha256_of

    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}\x1f{sha256_of(file)}\n".encode())
    return digest.hexdigest()


class ScoringDevice:
    """Device agent over a scoring backend, built on the first memo miss by `make_scorer()`."""

    is_stand_in = False
    confidence_signals = frozenset({"logprob", "entropy", "p_top", "margin"})  # what confidence baselines may read

    def __init__(self, name: str, model_path: Path, make_scorer: Callable[[], Any], backend: str,
                 prompt: PromptConfig = PromptConfig(), memo_dir: str | Path | None = None,
                 settings: dict | None = None):
        self.name = name
        self.model_path = model_path
        self.model_sha256 = model_fingerprint(model_path)
        self.backend = backend
        self.prompt = prompt
        self.settings = settings or {}
        self.memo = DecisionMemo(memo_path(memo_dir, model_path.stem)) if memo_dir is not None else None
        self._design = json.dumps({"rule": SCORE_DESIGN, "prompt": dataclasses.asdict(prompt)}, sort_keys=True)
        self._make_scorer = make_scorer
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = self._make_scorer()
        return self._scorer

    def decide(self, state: AgentState) -> dict:
        """The decision for `state` as the memo stores it: action, confidence, top scores, tokens, latency."""
        system, user = build_prompt(state, self.prompt)
        prompt = completion_prompt(system, user)
        actions = list(dict.fromkeys(state.valid_actions))
        key = decision_key(self.model_sha256, self._design, prompt, "\x1e".join(actions))
        decision = self.memo.get(key) if self.memo is not None else None
        if decision is not None:
            return decision
        start = time.perf_counter()
        scores, prompt_length = self.scorer.score(prompt, actions)
        latency = time.perf_counter() - start
        ranking = rank(scores)
        best = np.argsort(-scores, kind="stable")[:TOP_K]
        decision = {
            "action": actions[ranking.chosen], "tokens_in": prompt_length, "latency_s": latency,
            "logprob": float(scores[ranking.chosen]), "entropy": ranking.entropy, "p_top": ranking.p_top,
            "margin": ranking.margin, "top": [[actions[i], float(scores[i])] for i in best],
            "num_candidates": len(actions),
        }
        if self.memo is not None:
            self.memo.put(key, decision)
        return decision

    def act(self, state: AgentState) -> AgentStep:
        d = self.decide(state)
        return AgentStep(action=d["action"], tokens_in=d["tokens_in"], tokens_out=0, latency_s=d["latency_s"],
                         logprob=d["logprob"], entropy=d["entropy"], parse_ok=True, p_top=d["p_top"],
                         margin=d["margin"], top_actions=tuple((a, s) for a, s in d["top"]))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "llm",
            "backend": f"{self.backend}, scoring every valid action (length-normalised log-likelihood)",
            "model_file": self.model_path.name,
            "model_sha256": self.model_sha256,
            "rule": SCORE_DESIGN,
            "prompt": dataclasses.asdict(self.prompt),
            **self.settings,
        }

    def accounting(self) -> dict:
        scorer = self._scorer
        return {"memo": self.memo.stats() if self.memo is not None else None,
                "prompt_tokens_evaluated": scorer.prompt_tokens_evaluated if scorer else 0,
                "decode_calls": scorer.decode_calls if scorer else 0}


def gguf_scoring_device(model: str = "", prompt: PromptConfig = PromptConfig(), n_threads: int = 2,
                        n_ctx: int = 16384, memo_dir: str | Path | None = None) -> ScoringDevice:
    """`--agents.device gguf-score`: a GGUF file (default: the shipped Gemma-3-270M) through llama.cpp."""
    from hera_jax.agents.gguf_scorer import LlamaActionScorer
    from hera_jax.agents.llm import AgentUnavailableError
    from hera_jax.agents.models import default_gguf_path

    path = Path(model) if model else default_gguf_path()
    if not path.is_file():
        raise AgentUnavailableError(f"{path}: no such GGUF file; pass --agents.device-model PATH.gguf")
    return ScoringDevice(f"gguf-score:{path.name}", path,
                         lambda: LlamaActionScorer(path, n_ctx=n_ctx, n_threads=n_threads), "llama-cpp-python",
                         prompt, memo_dir, {"n_ctx": n_ctx})


def hf_scoring_device(model: str, gguf_file: str = "", prompt: PromptConfig = PromptConfig(), n_threads: int = 2,
                      memo_dir: str | Path | None = None) -> ScoringDevice:
    """`--agents.device llm-score`: a local transformers model directory (e.g. the exported Gemma)."""
    from hera_jax.agents.hf_scorer import HFActionScorer
    from hera_jax.agents.llm import AgentUnavailableError

    if not model or not Path(model).is_dir():
        raise AgentUnavailableError("--agents.device llm-score needs --agents.device-model: a local model directory "
                                    "(python -m hera_jax.agents.models --export-hf DIR writes the shipped Gemma's)")
    path = Path(model)
    return ScoringDevice(f"llm-score:{path.name}", path,
                         lambda: HFActionScorer(model, gguf_file, n_threads=n_threads), "transformers", prompt,
                         memo_dir, {"gguf_file": gguf_file} if gguf_file else {})
