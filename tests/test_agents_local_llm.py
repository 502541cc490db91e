"""Device LLM agents: the shipped Gemma-3-270M GGUF through llama-cpp-python, and a transformers causal LM loaded
from a local directory (a tiny randomly initialised one built here, so the test needs no hub download)."""

from __future__ import annotations

import math

import pytest

from hera_jax.agents import AgentOptions, make_agent
from hera_jax.agents.hf_device import HFConfig, HFDeviceAgent
from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.agents.models import default_gguf_path
from hera_jax.files import sha256_of
from hera_jax.state import AgentState

pytestmark = pytest.mark.slow

VALID = ("look around", "go to kitchen", "go to hallway", "open door to kitchen", "pick up metal pot",
         "focus on substance in metal pot")


def make_state(step: int = 0) -> AgentState:
    history = tuple((f"look at thing {i}", f"You see thing {i}. " * 20) for i in range(step))
    return AgentState(
        task_description="Your task is to boil water. First, focus on the substance. Then, take actions that will "
                         "cause it to change its state of matter.",
        observation="This room is called the hallway. In it, you see: a picture. A door to the kitchen (open).",
        valid_actions=VALID, history=history, step=step, env="scienceworld", task="boil", variation=0,
    )


def check_step(step, max_new_tokens: int):
    assert isinstance(step.action, str) and step.action
    assert step.parse_ok == (step.action in VALID)
    assert step.tokens_in > 100 and 1 <= step.tokens_out <= max_new_tokens
    assert step.latency_s > 0
    assert step.logprob is not None and step.logprob <= 0 and math.isfinite(step.logprob)
    assert step.entropy is not None and step.entropy >= 0


def test_shipped_gguf_is_assembled_and_matches_its_sha256sums():
    path = default_gguf_path()
    assert path.stat().st_size > 200e6
    assert sha256_of(path) == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture(scope="module")
def gguf_agent():
    return make_agent("device", "gguf", AgentOptions(max_new_tokens=12))


def test_gguf_device_agent_acts_with_metadata_and_is_deterministic(gguf_agent):
    first = gguf_agent.act(make_state())
    check_step(first, 12)
    assert gguf_agent.act(make_state()).action == first.action  # greedy decoding
    assert gguf_agent.describe()["model_file"] == "gemma-3-270m-q4_k_m.gguf" and not gguf_agent.is_stand_in
    assert sum(gguf_agent.accounting()["parse"].values()) == 2


def test_gguf_prompt_longer_than_the_context_keeps_the_current_state(gguf_agent):
    step = gguf_agent.act(make_state(step=60))  # ~60 long observations; only the last history_k are shown
    check_step(step, 12)


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    """A tiny random GPT-2 with a BPE tokenizer trained here on a few sentences, saved like any local model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [make_state(2).task_description, " ".join(VALID), "Action: Observation: Task: Example Your episode"] * 5
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<eos>")
    tokenizer.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=4096, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_hf_device_agent_loads_a_local_directory_and_acts(tiny_hf_model):
    agent = make_agent("device", "llm", AgentOptions(model=str(tiny_hf_model), max_new_tokens=8))
    assert isinstance(agent, HFDeviceAgent) and agent.name == f"hf:{tiny_hf_model.name}"
    step = agent.act(make_state(step=3))
    check_step(step, 8)
    assert agent.act(make_state(step=3)).raw_text == step.raw_text  # greedy


def test_hf_model_id_not_in_the_local_cache_fails_clearly_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(AgentUnavailableError, match="never downloads models.*HF_HUB_OFFLINE=1|HF_HUB_OFFLINE=1.*never"):
        HFDeviceAgent(HFConfig(model="someone/no-such-model-123"))
    with pytest.raises(AgentUnavailableError, match="--agents.device-model"):
        make_agent("device", "llm")
    assert not (tmp_path / "empty-hf-home" / "hub" / "models--someone--no-such-model-123").exists()
