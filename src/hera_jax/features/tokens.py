"""Token counts of router texts and whether the encoder's token window cuts off the current observation.

all-MiniLM-L6-v2 reads at most `max_seq_length` (256) tokens including [CLS] and [SEP]; anything later is dropped
silently. These functions measure that per text design (benchmarks/token_stats.py, tests/test_features_designs.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hera_jax.features.designs import obs_first_text
from hera_jax.state import parse_state_text

SPECIAL_TOKENS = 2  # [CLS] and [SEP] take two places of the window


def observation_span(state_text: str, design: str) -> tuple[str, int, int]:
    """(the embedded text holding the current observation, start and end character of the observation in it)."""
    parts = parse_state_text(state_text)
    if design == "joint":
        return state_text, len(state_text) - len(parts.observation), len(state_text)
    if design == "obs_first":
        return obs_first_text(parts), len("Now: "), len("Now: ") + len(parts.observation)
    if design == "segments":
        return parts.observation, 0, len(parts.observation)
    raise ValueError(f"unknown text design {design!r}")


def token_counts(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """int[N] tokens of each text as the encoder would see it untruncated, [CLS] and [SEP] included."""
    return np.asarray([len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]], np.int64)


def observation_cut(tokenizer, state_texts: Sequence[str], design: str, max_seq_length: int) -> np.ndarray:
    """bool[N]: the encoder's window ends before the end of the current observation (part of it is not read)."""
    spans = [observation_span(t, design) for t in state_texts]
    encoded = tokenizer([s[0] for s in spans], add_special_tokens=False, return_offsets_mapping=True)
    window = max_seq_length - SPECIAL_TOKENS
    cut = []
    for (_, start, end), offsets in zip(spans, encoded["offset_mapping"]):
        # index of the last token that reads any character of the observation
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        cut.append(bool(inside) and inside[-1] >= window)
    return np.asarray(cut, bool)


def load_tokenizer(model: str):
    """(fast tokenizer, max_seq_length) of a sentence-transformers model folder or the shipped default."""
    from transformers import AutoTokenizer

    from hera_jax.features.encoder import resolve_model_path

    folder = Path(resolve_model_path(model))
    max_seq_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True), int(max_seq_length)
