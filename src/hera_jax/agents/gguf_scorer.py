"""Score candidate actions with a GGUF model through llama.cpp's low-level API: prompt once, candidates as a trie.

The prompt is evaluated once into sequence 0 of the KV cache, keeping whatever prefix the previous prompt shared
with it (the instructions, the task, the early history). The candidates' token trie is then evaluated in one batch
per chunk: each trie node is one token that belongs to every candidate sequence passing through it (llama.cpp's
multi-sequence batches), so the attention of a candidate sees the prompt and its own prefix only. Next-token
distributions are requested only for the prompt's last token and the trie's inner nodes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.agents.scoring import TokenTrie, build_trie, log_softmax_at, mean_logprobs

LLAMA_INSTALL = "pip install 'hera_jax[llm]'  (builds llama-cpp-python from source)"
CANDIDATE_END = "\n"  # an action is complete when its line ends: "go" must not win by being a prefix of "go west"
PROMPT_BLOCK = 32  # prompt tokens per batch, at fixed offsets (see `_evaluate_prompt`)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaActionScorer:
    """`score(prompt, actions)` -> length-normalised log-likelihood of each action after `prompt`.

    Counters (`prompt_tokens_evaluated`, `decode_calls`) say what the model computed, for tests and benchmarks.
    """

    backend = "llama-cpp-python"

    def __init__(self, model_path: Path, n_ctx: int = 16384, n_threads: int = 2, n_batch: int = 1024,
                 resident_prompts: int = 8):
        try:
            import llama_cpp
            from llama_cpp import _internals, _logger
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError as e:
            raise AgentUnavailableError(f"llama-cpp-python is not installed: {LLAMA_INSTALL}") from e
        self._llama = llama_cpp
        _logger.set_verbose(False)  # llama.cpp's load and graph logs: errors only
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self._model = _internals.LlamaModel(path_model=str(model_path), params=model_params, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, min(n_batch, 512)
        params.n_threads = params.n_threads_batch = n_threads
        # sequences 0..R-1 hold the last R prompts (a rollout interleaves the states of several episodes, and each
        # keeps its prefix); then one sequence per candidate of a chunk, sharing its prompt's cells (unified KV);
        # the full sliding-window cache lets a sequence be cut back to a shared prefix (partial removal)
        self.residents = resident_prompts
        self.max_sequences = min(resident_prompts + 64, llama_cpp.llama_max_parallel_sequences())
        params.n_seq_max = self.max_sequences
        params.kv_unified = True
        params.swa_full = True
        with suppress_stdout_stderr(disable=False):  # llama.cpp prints its cache layout from C
            self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.n_vocab = self._model.n_vocab()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, self.max_sequences)
        self._resident: list[list[int]] = [[] for _ in range(resident_prompts)]  # the tokens each resident holds
        self._used = [0] * resident_prompts  # when each resident was last used (least recently used is replaced)
        self._clock = 0
        self.prompt_tokens_evaluated = 0
        self.decode_calls = 0

    # ---- tokens ------------------------------------------------------------------------------------------------
    def prompt_tokens(self, prompt: str) -> list[int]:
        return list(self._model.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))

    def action_tokens(self, action: str) -> list[int]:
        return list(self._model.tokenize(f" {action}{CANDIDATE_END}".encode("utf-8"), add_bos=False, special=False))

    # ---- model calls ---------------------------------------------------------------------------------------------
    def _decode(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[Sequence[int]],
                wants_logits: Sequence[bool]) -> None:
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, (token, position, seqs, logits) in enumerate(zip(tokens, positions, seq_ids, wants_logits)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, len(seqs), logits
            for j, seq in enumerate(seqs):
                batch.seq_id[i][j] = seq
        status = self._llama.llama_decode(self._ctx.ctx, batch)
        self.decode_calls += 1
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} on a batch of {len(tokens)} tokens")

    def _logits(self, row: int) -> np.ndarray:
        pointer = self._llama.llama_get_logits_ith(self._ctx.ctx, row)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def _forget(self, seq: int, start: int) -> None:
        self._llama.llama_memory_seq_rm(self._ctx.memory, seq, start, -1)

    def _evaluate_prompt(self, tokens: list[int]) -> tuple[int, np.ndarray]:
        """Evaluate `tokens` into the resident sequence sharing the longest prefix with them (the least recently
        used among ties); returns that sequence and the last token's logits.

        The prompt runs in blocks of `PROMPT_BLOCK` tokens aligned at multiples of it, and only whole shared blocks
        are kept: llama.cpp's kernels round differently for different batch sizes, so evaluating a token in a block
        that depends on the previous prompt would make a decision depend on what was scored before it (and a
        resumed run differ from a straight one).
        """
        # what each resident could keep: whole shared blocks (a few shared tokens must not evict a good prompt)
        shared = [min(_common_prefix(r, tokens), len(tokens) - 1) // PROMPT_BLOCK * PROMPT_BLOCK
                  for r in self._resident]
        seq = max(range(self.residents), key=lambda s: (shared[s], -self._used[s]))
        self._clock += 1
        self._used[seq] = self._clock
        others = [s for s in range(self.residents) if s != seq]
        while sum(len(self._resident[s]) for s in others) + len(tokens) + self.n_batch > self.n_ctx:
            victim = min((s for s in others if self._resident[s]), key=lambda s: self._used[s])  # room for all
            self._forget(victim, 0)
            self._resident[victim] = []
        keep = shared[seq]
        self._forget(seq, keep)
        cached = self._resident[seq] = self._resident[seq][:keep]
        for start in range(keep, len(tokens), PROMPT_BLOCK):
            chunk = tokens[start:start + PROMPT_BLOCK]
            last = start + len(chunk) == len(tokens)
            self._decode(chunk, range(start, start + len(chunk)), [(seq,)] * len(chunk),
                         [last and i == len(chunk) - 1 for i in range(len(chunk))])
            self.prompt_tokens_evaluated += len(chunk)
            cached.extend(chunk)
        return seq, self._logits(-1).copy()

    def _evaluate_trie(self, trie: TokenTrie, root_logits: np.ndarray, prompt_seq: int,
                       prompt_length: int) -> np.ndarray:
        """log p(node's token | prompt, node's prefix) for every node, one batch per node chunk."""
        node_logprobs = np.empty(trie.num_nodes)
        roots = np.flatnonzero(trie.parents < 0)
        node_logprobs[roots] = log_softmax_at(root_logits, trie.tokens[roots])
        inner = np.flatnonzero(trie.has_children)
        first = self.residents  # candidate sequences come after the resident prompts
        sequences = [first + c for c in range(len(trie.paths))]
        for seq in sequences:
            self._llama.llama_memory_seq_cp(self._ctx.memory, prompt_seq, seq, 0, prompt_length)
        try:
            self._decode(trie.tokens.tolist(), (prompt_length + trie.depths).tolist(),
                         [[first + c for c in m] for m in trie.members], trie.has_children.tolist())
            children = {node: np.flatnonzero(trie.parents == node) for node in inner}
            for node in inner:  # the batch returns logits for the flagged nodes, addressed by their batch index
                kids = children[node]
                node_logprobs[kids] = log_softmax_at(self._logits(int(node)), trie.tokens[kids])
        finally:
            for seq in sequences:
                self._forget(seq, 0)
        return node_logprobs

    def score(self, prompt: str, actions: Sequence[str]) -> tuple[np.ndarray, int]:
        """(float64[len(actions)] mean token log-likelihoods, prompt length in tokens).

        The prompt keeps its end (the current state) when it is too long; the head is what goes.
        """
        if not actions:
            raise ValueError("no candidate actions to score")
        candidates = [self.action_tokens(a) for a in actions]
        tokens = self.prompt_tokens(prompt)
        budget = self.n_ctx - self.n_batch  # room for the candidates' trie
        if len(tokens) > budget:
            tokens = tokens[-budget:]
        prompt_seq, root_logits = self._evaluate_prompt(tokens)
        scores = np.empty(len(actions))
        # chunks of candidates that fit the sequence limit and one batch
        start = 0
        while start < len(candidates):
            stop, nodes = start, 0
            while stop < len(candidates) and stop - start < self.max_sequences - self.residents:
                if nodes + len(candidates[stop]) > self.n_batch and stop > start:
                    break
                nodes += len(candidates[stop])
                stop += 1
            trie = build_trie(candidates[start:stop])
            scores[start:stop] = mean_logprobs(trie, self._evaluate_trie(trie, root_logits, prompt_seq, len(tokens)))
            start = stop
        return scores, len(tokens)

    def reset(self) -> None:
        """Forget every resident prompt (the next prompt is evaluated from its first token)."""
        self._forget(-1, 0)
        self._resident = [[] for _ in range(self.residents)]

    def close(self) -> None:
        if self._batch is not None:
            self._llama.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()
        self._model.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
