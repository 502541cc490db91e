"""The diagnosis pieces (research/diagnosis.py) on hand-worked examples."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.agents.stand_ins import PerturbedGoldDevice
from hera_jax.research.diagnosis import (
    cap_episode_rows,
    error_probabilities,
    gold_walk,
    harm_labels,
    missing_object_words,
    soft_auroc,
)
from hera_jax.router.metrics import auroc


def test_soft_auroc_matches_auroc_on_hard_labels_and_a_hand_value_on_soft_ones():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(50), rng.random(50) < 0.4
    scores[:10] = 0.5  # ties count one half in both
    np.testing.assert_allclose(soft_auroc(scores, labels.astype(float)),
                               float(auroc(jnp.asarray(scores), jnp.asarray(labels))), rtol=1e-6)
    # positives weigh (0.2, 0.8), negatives (0.8, 0.2): wins 0.8*0.8, ties 2 * 0.5 * 0.2*0.8, out of 1*1
    np.testing.assert_allclose(soft_auroc(np.array([0.0, 1.0]), np.array([0.2, 0.8])), 0.8)
    # scores that ignore p give one half
    np.testing.assert_allclose(soft_auroc(np.zeros(3), np.array([0.1, 0.5, 0.9])), 0.5)
    with pytest.raises(ValueError, match="shapes"):
        soft_auroc(np.zeros(3), np.zeros(2))


def test_gold_walk_marks_detours_and_off_path_states():
    due, deviates, detours = gold_walk(("look around", "take cap", "put cap in box"),
                                       ("look around", "open box", "Take  cap", "put cap in box", "look around"))
    assert due == ["look around", "take cap", "take cap", "put cap in box", None]
    np.testing.assert_array_equal(deviates, [False, True, False, False, False])  # nothing is due past the end
    np.testing.assert_array_equal(detours, [0, 0, 1, 1, 1])


def test_error_probabilities_follow_the_stand_in_error_model():
    device = PerturbedGoldDevice()
    np.testing.assert_allclose(
        error_probabilities(device, ["go to kitchen", "focus on ice", "take cap", None], np.array([0, 10, 2, 5])),
        [0.05, 0.8, 0.32, 0.0])


def test_harm_labels_keep_only_disagreements_of_unrecoverable_verbs():
    device = ["put cap in sink", "open box", "take cap", "move north"]
    cloud = ["put cap in box", "take cap", "take cap", "take cap"]
    # TWC probe: put 79/86 and move 3/5 fail (>= 0.5); open 0/28; agreement is never harm
    np.testing.assert_array_equal(harm_labels(device, cloud, "textworld_express:twc"), [1, 0, 0, 1])
    np.testing.assert_array_equal(harm_labels(device, cloud, "textworld_express:twc", min_unrecoverable=0.7),
                                  [1, 0, 0, 0])


def test_missing_object_words():
    texts = ["You see a red box and a cap.", "You are in the hallway.", "Task: go somewhere"]
    actions = ["put cap in red box", "go to kitchen", "look around"]
    np.testing.assert_array_equal(missing_object_words(actions, texts), [False, True, False])


def test_cap_episode_rows_cuts_long_episodes_and_their_late_success():
    rows = [{"episode_id": e, "step": t, "episode_steps": n, "success": s}
            for e, n, s in (("lost", 6, False), ("won", 3, True), ("late", 5, True)) for t in range(n)]
    capped = cap_episode_rows(rows, {"lost": 2, "won": 4, "late": 4})
    by_episode = {}
    for row in capped:
        by_episode.setdefault(row["episode_id"], []).append(row)
    assert [len(by_episode[e]) for e in ("lost", "won", "late")] == [2, 3, 4]
    assert {r["episode_steps"] for r in by_episode["lost"]} == {2}
    assert {r["episode_steps"] for r in by_episode["late"]} == {4}
    assert all(r["success"] for r in by_episode["won"]) and not any(r["success"] for r in by_episode["late"])
