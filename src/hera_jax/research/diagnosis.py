"""Why a router does (not) beat random step routing: array-in/array-out pieces of the diagnosis.

Only meaningful with the STAND-IN agents, whose error model is known: the cloud is the gold path
(`GoldPathOracle`), the device is the gold path with hashed mistakes (`PerturbedGoldDevice`). The diagnosis
compares the router's p(cloud) with what the stand-in device really does:
- `error_probabilities`: the device's true error probability at each state (its error model, not its dice);
- `soft_auroc`: how well scores rank states by such a probability (positives weighted p, negatives 1-p);
- `gold_walk`: along an episode's actions, the gold action due at each step and whether the step left the path;
- `harm_labels`: "needs cloud" only where the device's mistake is of a kind the probe found unrecoverable.
`experiments/diagnose.py` runs these over a dataset and an evaluation run folder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from hera_jax.agents.stand_ins import PerturbedGoldDevice, gold_next_action
from hera_jax.evaluate.baselines.bayes_harm import UNRECOVERABLE_COUNTS, action_verb
from hera_jax.state import normalize_action


def soft_auroc(scores: np.ndarray, p_positive: np.ndarray) -> float:
    """AUROC of `scores` against soft labels: each state is a positive with weight p and a negative with weight
    1 - p. With p in {0, 1} it is the ordinary AUROC; with p the device's error probability it is the AUROC against
    the device's dice in expectation (to first order), so the dice's noise does not enter."""
    scores = np.asarray(scores, np.float64)
    p = np.clip(np.asarray(p_positive, np.float64), 0.0, 1.0)
    if scores.shape != p.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and p_positive {p.shape} must be equal 1-d shapes")
    labels = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    return float(roc_auc_score(labels, np.concatenate([scores, scores]), sample_weight=np.concatenate([p, 1 - p])))


def error_probabilities(device: PerturbedGoldDevice, gold_actions: Sequence[str | None],
                        steps: np.ndarray) -> np.ndarray:
    """float[N]: the stand-in device's probability of erring at each state; 0 where no gold action is left."""
    return np.asarray([0.0 if gold is None else device.error_probability(gold, int(step))
                       for gold, step in zip(gold_actions, np.asarray(steps), strict=True)], np.float64)


def unrecoverable_rates(env: str, actions: Sequence[str]) -> np.ndarray:
    """float[N]: the probe-measured share of episodes that a mistake with each action's verb made fail
    (`bayes_harm.UNRECOVERABLE_COUNTS`; verbs never probed count as recoverable, 0)."""
    counts = UNRECOVERABLE_COUNTS[env]
    return np.asarray([counts[v][0] / counts[v][1] if v in counts else 0.0 for v in map(action_verb, actions)])


def harm_labels(device_actions: Sequence[str], cloud_actions: Sequence[str], env: str,
                min_unrecoverable: float = 0.5) -> np.ndarray:
    """int8[N]: 1 where the device's action differs from the cloud's AND its verb made at least
    `min_unrecoverable` of the probe's episodes fail (the IL label restricted to harmful disagreements)."""
    differs = np.asarray([normalize_action(d) != normalize_action(c)
                          for d, c in zip(device_actions, cloud_actions, strict=True)])
    return (differs & (unrecoverable_rates(env, device_actions) >= min_unrecoverable)).astype(np.int8)


def gold_walk(gold_path: Sequence[str], actions: Sequence[str]) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Along one episode's actions: the gold action due before each step (None past the path's end), bool[T]
    whether the step's action left the gold path (differs from the gold action due), and int[T] how many such
    detours happened before the step (> 0: the state is off the gold path, which IL data never holds)."""
    gold_path = tuple(gold_path)
    due = [gold_next_action(gold_path, tuple(actions[:t])) for t in range(len(actions))]
    deviates = np.asarray([g is not None and normalize_action(a) != normalize_action(g)
                           for a, g in zip(actions, due)], bool)
    detours_before = np.concatenate([[0], np.cumsum(deviates)[:-1]]).astype(np.int32) if len(actions) else \
        np.zeros(0, np.int32)
    return due, deviates, detours_before


_FUNCTION_WORDS = frozenset({"to", "in", "on", "into", "the", "a", "an", "from", "with", "at", "of", "door", "around",
                             "up", "down"})


def missing_object_words(actions: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """bool[N]: some object word of each action (its words after the verb, minus function words) does not occur in
    the matching text, i.e. what the action is about is not visible there."""
    out = []
    for action, text in zip(actions, texts, strict=True):
        words = normalize_action(action).split()[1:]
        visible = set(normalize_action(text).replace(",", " ").replace(".", " ").split())
        out.append(any(w not in visible for w in words if w not in _FUNCTION_WORDS))
    return np.asarray(out, bool)


def cap_episode_rows(rows: Sequence[dict], caps: dict[str, int]) -> list[dict]:
    """Step records with every episode cut after `caps[episode_id]` steps (`episode_steps` rewritten; an episode
    keeps its success only if it ended within the cap). With the gold-path stand-in cloud a lost episode runs to the
    step limit, so its cloud calls, all wasted, dominate a pooled cloud-step ratio; capping at a few times the gold
    length shows how methods compare on the steps that decide an episode."""
    lengths = {}
    for row in rows:
        lengths[row["episode_id"]] = max(lengths.get(row["episode_id"], 0), row["step"] + 1)
    ended_in_time = {e: n <= caps[e] for e, n in lengths.items()}
    return [{**row, "episode_steps": min(lengths[row["episode_id"]], caps[row["episode_id"]]),
             "success": bool(row["success"]) and ended_in_time[row["episode_id"]]}
            for row in rows if row["step"] < caps[row["episode_id"]]]
