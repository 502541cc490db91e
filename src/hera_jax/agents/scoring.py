"""Action scoring, the array part: a token trie over the valid actions, per-action log-likelihoods, and confidence.

A scoring device ranks the environment's valid actions by their length-normalised log-likelihood as the
continuation of the prompt, so every action it takes is valid. The candidates share token prefixes ("take apple",
"take apple from counter"), so they are evaluated as one token trie: a prefix shared by several candidates is one
node, evaluated once. Everything here takes and returns arrays; the model lives in the backends
(`gguf_scorer.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenTrie:
    """The candidates' token sequences merged on shared prefixes.

    Node i holds `tokens[i]` at `depths[i]` tokens after the prompt; `parents[i]` is the node before it (-1: the
    prompt's last token). `members[i]` are the candidates whose sequence passes through node i, `paths[c]` the
    nodes of candidate c in order. A node's next-token distribution is needed only when it `has_children`.
    """

    tokens: np.ndarray  # int32[N]
    parents: np.ndarray  # int32[N]
    depths: np.ndarray  # int32[N]
    has_children: np.ndarray  # bool[N]
    members: tuple[tuple[int, ...], ...]
    paths: tuple[np.ndarray, ...]  # int32[len(candidate c)] per candidate

    @property
    def num_nodes(self) -> int:
        return len(self.tokens)


def build_trie(candidates: Sequence[Sequence[int]]) -> TokenTrie:
    """The trie of `candidates` (token id sequences, each non-empty); duplicates share all their nodes."""
    index: dict[tuple[int, ...], int] = {}
    tokens, parents, depths, members = [], [], [], []
    paths = []
    for c, sequence in enumerate(candidates):
        if len(sequence) == 0:
            raise ValueError(f"candidate {c} has no tokens")
        path = []
        for depth in range(len(sequence)):
            prefix = tuple(sequence[: depth + 1])
            node = index.get(prefix)
            if node is None:
                node = index[prefix] = len(tokens)
                tokens.append(int(sequence[depth]))
                parents.append(path[-1] if path else -1)
                depths.append(depth)
                members.append([])
            members[node].append(c)
            path.append(node)
        paths.append(np.asarray(path, np.int32))
    parents_arr = np.asarray(parents, np.int32)
    has_children = np.zeros(len(tokens), bool)
    has_children[parents_arr[parents_arr >= 0]] = True
    return TokenTrie(np.asarray(tokens, np.int32), parents_arr, np.asarray(depths, np.int32), has_children,
                     tuple(tuple(m) for m in members), tuple(paths))


def log_softmax_at(logits: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """log p(token) for `token_ids` under one row of next-token logits (the full vocabulary)."""
    logits = np.asarray(logits, np.float32)
    peak = logits.max()
    log_z = float(peak) + np.log(np.exp(logits - peak).sum(dtype=np.float64))  # float32 exp: the vocab is 262k
    return logits[np.asarray(token_ids)].astype(np.float64) - log_z


def mean_logprobs(trie: TokenTrie, node_logprobs: np.ndarray) -> np.ndarray:
    """float64[C]: each candidate's mean token log-probability, from `node_logprobs[i]` = log p(node i's token |
    everything before it)."""
    flat = np.concatenate(trie.paths)
    owner = np.repeat(np.arange(len(trie.paths)), [len(p) for p in trie.paths])
    totals = np.bincount(owner, weights=np.asarray(node_logprobs, np.float64)[flat], minlength=len(trie.paths))
    return totals / np.bincount(owner, minlength=len(trie.paths))


@dataclasses.dataclass(frozen=True)
class Ranking:
    """A scored set of candidates: the argmax and how sure the model is of it."""

    chosen: int  # index of the best-scoring candidate (the first among ties)
    scores: np.ndarray  # float64[C]: length-normalised log-likelihoods
    probs: np.ndarray  # float64[C]: softmax of the scores over the candidates
    p_top: float  # probs[chosen], in (0, 1]
    margin: float  # p_top minus the second-highest probability, in [0, 1] (1 for a single candidate)
    entropy: float  # of probs, in nats, in [0, log C]


def rank(scores: np.ndarray) -> Ranking:
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 1 or len(scores) == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"need a non-empty vector of finite scores, got {scores!r}")
    shifted = scores - scores.max()
    probs = np.exp(shifted) / np.exp(shifted).sum()
    chosen = int(np.argmax(scores))
    ordered = np.sort(probs)[::-1]
    second = ordered[1] if len(ordered) > 1 else 0.0
    positive = probs[probs > 0]
    entropy = float(-(positive * np.log(positive)).sum())
    return Ranking(chosen, scores, probs, float(probs[chosen]), float(probs[chosen] - second), max(entropy, 0.0) + 0.0)
