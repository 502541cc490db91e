"""The scoring device: the trie and confidence math on constructed arrays, then the shipped Gemma-3-270M through
llama.cpp (trie scores equal candidate-by-candidate evaluation, the prompt prefix is evaluated once, every action
is valid, memo hits return identical decisions), and the confidence baselines that read it."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import chex
import numpy as np
import pydantic
import pytest

from hera_jax.agents import AgentOptions, make_agent
from hera_jax.agents.base import AgentStep
from hera_jax.agents.memo import DecisionMemo, decision_key
from hera_jax.agents.scoring import build_trie, log_softmax_at, mean_logprobs, rank
from hera_jax.evaluate.baselines import BASELINES, device_margin, device_p_top
from hera_jax.rollout.records import STEP_SCHEMA
from hera_jax.state import AgentState

# ---- arrays ------------------------------------------------------------------------------------------------------


def test_trie_shares_prefixes_and_its_paths_spell_every_candidate():
    candidates = [[5, 6, 7], [5, 6], [5, 8, 9, 1], [2], [5, 6, 7]]  # the last duplicates the first
    trie = build_trie(candidates)
    assert trie.num_nodes == 7  # 5, 5-6, 5-6-7, 5-8, 5-8-9, 5-8-9-1, 2
    for c, sequence in enumerate(candidates):
        np.testing.assert_array_equal(trie.tokens[trie.paths[c]], sequence)
        np.testing.assert_array_equal(trie.depths[trie.paths[c]], np.arange(len(sequence)))
        assert all(c in trie.members[node] for node in trie.paths[c])
        parents = trie.parents[trie.paths[c]]
        assert parents[0] == -1 and list(parents[1:]) == list(trie.paths[c][:-1])
    np.testing.assert_array_equal(trie.paths[0], trie.paths[4])
    inner = {int(n) for n in np.flatnonzero(trie.has_children)}
    assert inner == {int(p) for p in trie.parents if p >= 0}
    with pytest.raises(ValueError, match="no tokens"):
        build_trie([[1], []])


def test_mean_logprobs_is_the_per_candidate_mean_of_its_nodes():
    rng = np.random.default_rng(0)
    candidates = [list(rng.integers(0, 4, size=rng.integers(1, 6))) for _ in range(30)]
    trie = build_trie(candidates)
    node_logprobs = -rng.random(trie.num_nodes) * 5
    expected = [node_logprobs[path].mean() for path in trie.paths]
    np.testing.assert_allclose(mean_logprobs(trie, node_logprobs), expected, rtol=1e-12)


def test_log_softmax_at_matches_the_definition():
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32) * 10
    full = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum())
    np.testing.assert_allclose(log_softmax_at(logits, [3, 999, 3]), full[[3, 999, 3]], atol=1e-5)


@pytest.mark.parametrize("scores", [[-1.0], [-2.0, -2.0], [-0.5, -3.0, -1.0, -9.0], list(-np.arange(50) / 7)])
def test_rank_confidence_fields_are_in_range(scores):
    ranking = rank(np.asarray(scores))
    chex.assert_trees_all_close(ranking.probs.sum(), 1.0, atol=1e-12)
    assert ranking.chosen == int(np.argmax(scores))  # the first among ties
    assert 0 < ranking.p_top <= 1 and 0 <= ranking.margin <= 1
    assert 0 <= ranking.entropy <= math.log(len(scores)) + 1e-12
    if len(scores) == 1:
        assert ranking.p_top == 1.0 and ranking.margin == 1.0 and ranking.entropy == 0.0
    if len(scores) > 1 and len(set(scores)) == 1:
        assert ranking.margin == 0.0 and ranking.entropy == pytest.approx(math.log(len(scores)))


def test_rank_refuses_empty_or_non_finite_scores():
    for bad in ([], [0.0, np.nan], [-np.inf]):
        with pytest.raises(ValueError):
            rank(np.asarray(bad))


# ---- the memo ----------------------------------------------------------------------------------------------------


def test_memo_is_shared_across_instances_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "memo.jsonl"
    first, second = DecisionMemo(path), DecisionMemo(path)
    key = decision_key("model", "design", "prompt")
    assert first.get(key) is None
    first.put(key, {"action": "go west", "p_top": 0.25})
    assert second.get(key) == {"action": "go west", "p_top": 0.25}  # written by another instance after it loaded
    with open(path, "a") as f:
        f.write('{"key": "torn", "decis')  # a writer killed mid-line
    third = DecisionMemo(path)
    third.put("k2", {"action": "look"})  # starts on its own line
    with pytest.warns(UserWarning, match=r"memo.jsonl:2: skipped a malformed memo line"):
        fourth = DecisionMemo(path)
    assert fourth.get(key)["action"] == "go west" and fourth.get("k2") == {"action": "look"}
    assert fourth.stats()["memo_hits"] == 2 and fourth.stats()["memo_hit_rate"] == 1.0


# ---- records -----------------------------------------------------------------------------------------------------


def test_records_refuse_out_of_range_device_confidence():
    row = dict(episode_id="e", env="x", task="t", variation=0, split="train", step=0, episode_steps=1,
               state_text="s", state_key="k", actor="device", action="a", device_action="a", cloud_action=None,
               reward=0.0, score=0.0, done=True, success=False, device_p_top=0.4, device_margin=0.1,
               device_entropy=0.7, device_logprob=-1.2)
    STEP_SCHEMA.validate_python(row)
    for field, value in (("device_p_top", 1.5), ("device_margin", -0.1), ("device_entropy", -1.0),
                         ("device_logprob", math.nan)):
        with pytest.raises(pydantic.ValidationError, match=field):
            STEP_SCHEMA.validate_python({**row, field: value})


# ---- confidence baselines ----------------------------------------------------------------------------------------


class _Device:
    def __init__(self, step: AgentStep, signals=frozenset({"p_top", "margin"}), stand_in=False):
        self.step, self.confidence_signals, self.is_stand_in, self.name, self.calls = step, signals, stand_in, "d", 0

    def act(self, state):
        self.calls += 1
        return self.step


@pytest.mark.parametrize("module,field", [(device_p_top, "p_top"), (device_margin, "margin")])
def test_signal_baselines_escalate_below_their_knob_and_need_a_scoring_device(module, field):
    assert BASELINES[module.__name__.rsplit(".", 1)[1]] is module
    for value, knob, actor in ((0.2, 0.3, "cloud"), (0.3, 0.3, "device"), (0.9, 0.5, "device"), (None, 0.9, "device")):
        device = _Device(AgentStep("go west", **{field: value}))
        choice = module.chooser(knob, SimpleNamespace(device=device))(None, "text", 0)
        assert choice.actor == actor and device.calls == 1
    assert module.unavailable(SimpleNamespace(device=_Device(AgentStep("a")))) is None
    assert "stand-in" in module.unavailable(SimpleNamespace(device=_Device(AgentStep("a"), stand_in=True)))
    assert "gguf-score" in module.unavailable(SimpleNamespace(device=_Device(AgentStep("a"), signals=frozenset())))


# ---- the shipped Gemma-3-270M ------------------------------------------------------------------------------------

VALID = ("open fridge", "take apple", "take apple from counter", "move north", "look around", "inventory")


def make_state(observation: str = "You are in the kitchen. You see a closed fridge and an apple on the counter.",
               history: tuple = ()) -> AgentState:
    return AgentState(task_description="Put the apple in the fridge.", observation=observation, valid_actions=VALID,
                      history=history, step=len(history), env="textworld_express:twc", task="twc-easy", variation=0)


@pytest.fixture(scope="module")
def scorer():
    from hera_jax.agents.gguf_scorer import LlamaActionScorer
    from hera_jax.agents.models import default_gguf_path

    return LlamaActionScorer(default_gguf_path(), n_ctx=4096, n_batch=512)


def _alone(scorer, tokens: list[int], action: str, filler: int = 32) -> float:
    """Mean log-likelihood of `action` evaluated by itself in sequence 0, in one batch with `filler` unrelated
    tokens of another sequence (llama.cpp's kernels round differently for very small batches)."""
    candidate = scorer.action_tokens(action)
    scorer.reset()
    scorer._decode(tokens, range(len(tokens)), [(0,)] * len(tokens), [i == len(tokens) - 1 for i in range(len(tokens))])
    logprobs = [log_softmax_at(scorer._logits(-1), [candidate[0]])[0]]
    scorer._decode(candidate + [candidate[0]] * filler,
                   [*range(len(tokens), len(tokens) + len(candidate)), *range(filler)],
                   [(0,)] * len(candidate) + [(7,)] * filler, [True] * len(candidate) + [False] * filler)
    logprobs += [log_softmax_at(scorer._logits(j), [candidate[j + 1]])[0] for j in range(len(candidate) - 1)]
    scorer.reset()
    return float(np.mean(logprobs))


@pytest.mark.slow
def test_trie_scores_equal_scoring_each_candidate_alone(scorer):
    prompt = "Task: put the apple in the fridge.\nObservation: You see a fridge and an apple.\nAction:"
    scores, length = scorer.score(prompt, list(VALID))
    tokens = scorer.prompt_tokens(prompt)
    assert length == len(tokens)
    # no candidate sees another's tokens: the shared-prefix trie gives each one its own-sequence score
    np.testing.assert_allclose(scores, [_alone(scorer, tokens, a) for a in VALID], atol=1e-4)


@pytest.mark.slow
def test_the_prompt_prefix_is_evaluated_once(scorer):
    from hera_jax.agents.gguf_scorer import PROMPT_BLOCK

    prompt = "Task: tidy the house.\nObservation: You are in the bedroom. " + "It is quiet. " * 30 + "\nAction:"
    scorer.score(prompt, list(VALID))
    evaluated, calls = scorer.prompt_tokens_evaluated, scorer.decode_calls
    scorer.score(prompt, list(VALID[:3]))  # same prompt: only its last block runs again (its logits are needed)
    assert 1 <= scorer.prompt_tokens_evaluated - evaluated <= PROMPT_BLOCK
    assert scorer.decode_calls - calls == 2  # that block, then all candidates in one trie batch
    longer = prompt + " open fridge\nObservation: The fridge is open.\nAction:"
    evaluated = scorer.prompt_tokens_evaluated
    scorer.score(longer, list(VALID))
    new_tokens = len(scorer.prompt_tokens(longer)) - len(scorer.prompt_tokens(prompt))
    assert scorer.prompt_tokens_evaluated - evaluated <= new_tokens + PROMPT_BLOCK  # the shared prefix is kept
    assert len(scorer.prompt_tokens(longer)) > 2 * PROMPT_BLOCK + new_tokens
    # a rollout interleaves episodes: each keeps its own resident prompt
    other = "Task: cook a meal.\nObservation: You are in the kitchen. " + "It smells good. " * 30 + "\nAction:"
    scorer.score(other, list(VALID))
    evaluated = scorer.prompt_tokens_evaluated
    scorer.score(longer, list(VALID))
    scorer.score(other, list(VALID))
    assert scorer.prompt_tokens_evaluated - evaluated <= 2 * PROMPT_BLOCK


@pytest.mark.slow
def test_scores_do_not_depend_on_what_was_scored_before(scorer):
    """What makes a resumed run equal a straight one: the kept prefix is whole aligned blocks only."""
    base = "Task: put the apple in the fridge.\nObservation: You are in the kitchen. " + "You see things. " * 12
    first, second = base + "\nAction:", base + "The fridge is open.\nAction:"
    scorer.reset()
    fresh, _ = scorer.score(second, list(VALID))
    scorer.score(first, list(VALID))
    after_first, _ = scorer.score(second, list(VALID))
    np.testing.assert_array_equal(after_first, fresh)


@pytest.fixture(scope="module")
def memo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("memo")


@pytest.mark.slow
def test_scoring_device_always_acts_validly_with_confidence_and_memo_hits_are_identical(memo_dir):
    agent = make_agent("device", "gguf-score", AgentOptions(memo_dir=str(memo_dir)))
    assert agent.name.startswith("gguf-score:gemma-3-270m") and not agent.is_stand_in
    states = [make_state(), make_state("The fridge is open. It is empty.", (("open fridge", "You open it."),))]
    first = [agent.act(s) for s in states]
    for step in first:
        assert step.action in VALID and step.parse_ok
        assert 0 < step.p_top <= 1 and 0 <= step.margin <= 1 and 0 <= step.entropy <= math.log(len(VALID)) + 1e-9
        assert step.logprob < 0 and step.top_actions[0] == (step.action, step.logprob) and len(step.top_actions) == 5
    assert agent.accounting()["memo"]["memo_misses"] == 2
    again = make_agent("device", "gguf-score", AgentOptions(memo_dir=str(memo_dir)))
    assert [again.act(s) for s in states] == first  # latency included: the stored decision
    assert again._scorer is None  # every answer came from the memo: the model was never loaded
    assert again.accounting()["memo"]["memo_hit_rate"] == 1.0
    lines = (memo_dir / "device_decisions_gemma-3-270m-q4_k_m.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["decision"]["num_candidates"] == len(VALID)


# ---- the transformers backend (a tiny random GPT-2 built here; the exported Gemma works the same way) ---------------

from tests.test_agents_local_llm import tiny_hf_model  # noqa: E402,F401  (a fixture)


@pytest.mark.slow
def test_transformers_scorer_equals_a_full_forward_per_candidate_and_acts_validly(tiny_hf_model, tmp_path):
    import torch

    from hera_jax.agents.hf_scorer import HFActionScorer

    scorer = HFActionScorer(str(tiny_hf_model), max_batch=4)  # two candidate batches of padded width
    prompt = "Task: put the apple in the fridge.\nObservation: a fridge, an apple.\nAction:"
    scores, length = scorer.score(prompt, list(VALID))
    tokens = scorer.prompt_tokens(prompt)
    assert length == len(tokens) and scorer.decode_calls == 3  # the prompt once, then 2 candidate batches
    for action, score in zip(VALID, scores):
        candidate = scorer.action_tokens(action)
        with torch.no_grad():
            logits = scorer.model(input_ids=torch.tensor([tokens + candidate])).logits[0]
        logprobs = torch.log_softmax(logits.float(), -1)
        expected = np.mean([float(logprobs[len(tokens) - 1 + j, candidate[j]]) for j in range(len(candidate))])
        np.testing.assert_allclose(score, expected, atol=1e-4, err_msg=action)
    agent = make_agent("device", "llm-score", AgentOptions(model=str(tiny_hf_model), memo_dir=str(tmp_path)))
    step = agent.act(make_state())
    assert agent.name == f"llm-score:{tiny_hf_model.name}" and step.action in VALID and 0 < step.p_top <= 1
    assert make_agent("device", "llm-score", AgentOptions(model=str(tiny_hf_model),
                                                          memo_dir=str(tmp_path))).act(make_state()) == step


# ---- device signals: AUROC and agreement by step kind ------------------------------------------------------------


def test_auroc_equals_the_pairwise_definition_and_bootstrap_is_paired_and_bracketing():
    import pandas as pd

    from hera_jax.research.device_signals import agreement_by_kind, auroc, paired_differences, signal_aurocs

    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.4
    scores = np.round(labels * 0.5 + rng.random(200), 1)  # ties on purpose
    pairs = [(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]]
    assert auroc(scores, labels) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert math.isnan(auroc(scores, np.zeros(200, bool)))
    episodes = np.repeat(np.arange(40), 5)
    out, boots = signal_aurocs({"good": scores, "flipped": -scores}, labels, episodes, resamples=300, seed=0)
    assert out["good"]["low"] <= out["good"]["auroc"] <= out["good"]["high"]
    assert out["flipped"]["auroc"] == pytest.approx(1 - out["good"]["auroc"])
    assert out["flipped"]["low"] == pytest.approx(1 - out["good"]["high"])  # the same resamples
    # paired: on every resample good - flipped = 2 * good - 1, so the difference's CI is exactly that map of good's
    diff = paired_differences(out, boots, ["good"])["good - flipped"]
    assert diff["difference"] == pytest.approx(2 * out["good"]["auroc"] - 1)
    assert (diff["low"], diff["high"]) == pytest.approx((2 * out["good"]["low"] - 1, 2 * out["good"]["high"] - 1))
    kinds = agreement_by_kind(pd.Series(["take a", "take b", "put a in b", "Look around"]),
                              np.array([1, 0, 1, 0]))
    assert kinds.loc["take"].tolist() == [2, 0.5] and kinds.loc["put"].agreement == 0 and kinds.loc["look"].agreement == 1
