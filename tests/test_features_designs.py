"""Text designs of the router input (joint / obs_first / segments), the one entry point, and the cache's writers."""

import dataclasses
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.features import FeatureSpec, FeatureSpecError, featurize, open_cache, router_features
from hera_jax.features.cache import FeatureCache, cache_path
from hera_jax.features.designs import embedding_plan, history_item_text, repeat_rate
from hera_jax.features.tokens import load_tokenizer, observation_cut, token_counts
from hera_jax.router.checkpoint import load_router, save_router
from hera_jax.router.model import RouterMLP
from hera_jax.rollout.records import read_steps
from hera_jax.router.train import TrainConfig
from hera_jax.state import AgentState, parse_state_text, state_key, state_text
from tests.conftest import ROOT, SHIPPED_DATASET
from tests.test_features import CountingEncoder


def _state(history, observation="You are in the kitchen. A stove is here."):
    return AgentState("Your task is to boil water.", observation, ("look around",), history=history)


def test_parse_state_text_gives_back_its_parts():
    history = tuple((f"Go  to room {i}", f"> Room {i}\n has a door.") for i in range(5))  # obs starting with "> "
    for k in (0, 1, 3):
        state = _state(history, observation="x" * 900)
        parts = parse_state_text(state_text(state, history_k=k, max_obs_chars=400))
        assert parts.task == "Your task is to boil water."
        assert parts.history == tuple((f"Go to room {i}", f"> Room {i} has a door.") for i in range(5 - k, 5))[:k]
        assert parts.observation == "x" * 397 + "..."  # clipped as state_text clips it
    empty = parse_state_text(state_text(_state((), observation="")))
    assert empty.history == () and empty.observation == ""
    with pytest.raises(ValueError, match="not a state text"):
        parse_state_text("Task: a\n> act\nNow: b")


def test_every_shipped_state_text_round_trips():
    for row in read_steps(SHIPPED_DATASET / "steps.jsonl")[0][:500]:  # the shipped steps are stored gzipped
        text = row["state_text"]
        parts = parse_state_text(text)
        rebuilt = AgentState(parts.task, parts.observation, (), history=parts.history)
        assert state_text(rebuilt, history_k=len(parts.history)) == text


def test_joint_design_is_todays_features(tmp_path):
    # joint: one rounded embedding of the whole state text + scalars, under the existing cache file name
    texts = [state_text(_state((("open door", "The door is open."),))), state_text(_state(()))]
    spec = FeatureSpec(encoder="toy", embedding_dim=8, horizon=10, text_design="joint")
    encode = CountingEncoder()
    features, num_new = featurize([state_key(t) for t in texts], texts, np.array([0, 5]), spec, tmp_path, encode)
    expected = np.asarray(CountingEncoder()(texts), np.float16).astype(np.float32)
    np.testing.assert_array_equal(features[:, :8], expected)
    np.testing.assert_allclose(features[:, 8], [0.0, 0.5])
    assert num_new == 2 and cache_path(tmp_path, "toy").exists() and spec.input_dim == 9


def test_obs_first_puts_the_observation_first_and_newest_history_next(tmp_path):
    history = (("go north", "Hallway."), ("open fridge", "The fridge is open."))
    text = state_text(_state(history))
    plan = embedding_plan([text], "obs_first")
    assert plan.texts == ["Now: You are in the kitchen. A stove is here.\nTask: Your task is to boil water.\n"
                          "> open fridge\nThe fridge is open.\n> go north\nHallway."]
    spec = FeatureSpec(encoder="toy", embedding_dim=8, text_design="obs_first")
    featurize([state_key(text)], [text], np.array([2]), spec, tmp_path, CountingEncoder())
    assert cache_path(tmp_path, "toy", "obs_first").exists() and not cache_path(tmp_path, "toy").exists()


def test_segments_embed_each_part_once_and_combine_task_observation_history_mean(tmp_path):
    h1, h2 = ("go north", "Hallway."), ("open fridge", "The fridge is open.")
    texts = [state_text(_state(())), state_text(_state((h1,))), state_text(_state((h1, h2)))]
    spec = FeatureSpec(encoder="toy", embedding_dim=8, scalar_features=(), text_design="segments")
    encode = CountingEncoder()
    cache = open_cache(tmp_path, spec)
    features, num_new = router_features(texts, np.array([0, 1, 2]), spec, [cache], encode)
    # task and observation are shared by all three states; two history items: 4 distinct texts for 9 slots
    assert num_new == 4 and encode.calls == [4] and spec.input_dim == 24 and features.shape == (3, 24)
    vec = lambda t: np.asarray(CountingEncoder()([t])[0], np.float16).astype(np.float32)  # noqa: E731
    task, obs = vec("Your task is to boil water."), vec("You are in the kitchen. A stove is here.")
    e1, e2 = vec(history_item_text(*h1)), vec(history_item_text(*h2))
    np.testing.assert_array_equal(features[:, :8], np.stack([task] * 3))
    np.testing.assert_array_equal(features[:, 8:16], np.stack([obs] * 3))
    np.testing.assert_allclose(features[:, 16:], np.stack([np.zeros(8), e1, (e1 + e2) / 2]), rtol=1e-6)
    # a later call finds every segment in the cache (after a flush, in a new process-like object)
    cache.flush()
    again, num_new2 = router_features(texts, np.array([0, 1, 2]), spec, [open_cache(tmp_path, spec)], encode)
    assert num_new2 == 0 and encode.calls == [4]
    np.testing.assert_array_equal(again, features)


@pytest.mark.parametrize("design", ["joint", "segments"])
def test_repeated_states_are_planned_once_and_get_the_features_of_their_first_copy(tmp_path, design, monkeypatch):
    h1 = ("go north", "Hallway.")
    distinct = [state_text(_state(())), state_text(_state((h1,)))]
    texts = [distinct[i] for i in (0, 1, 1, 0, 1)]  # RL visits and evaluation states repeat like this
    steps = np.array([0, 1, 3, 2, 1])
    spec = FeatureSpec(encoder="toy", embedding_dim=8, scalar_features=("step_frac",), text_design=design)
    planned = []
    import hera_jax.features as features_module

    def counting_plan(plan_texts, *args):
        planned.append(len(plan_texts))
        return embedding_plan(plan_texts, *args)

    monkeypatch.setattr(features_module, "embedding_plan", counting_plan)
    repeated, _ = router_features(texts, steps, spec, [open_cache(tmp_path / "a", spec)], CountingEncoder())
    assert planned == [2]  # the two distinct texts, not five
    one_by_one = np.concatenate([router_features([t], steps[i:i + 1], spec, [open_cache(tmp_path / "b", spec)],
                                                 CountingEncoder())[0] for i, t in enumerate(texts)])
    np.testing.assert_array_equal(repeated, one_by_one)
    assert not np.array_equal(repeated[1], repeated[2])  # same state at another step: other scalar features


def test_read_only_caches_are_searched_first_and_only_the_last_receives_new_texts(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=8, scalar_features=(), text_design="segments")
    texts = [state_text(_state(()))]
    featurize(["unused"], texts, np.array([0]), spec, tmp_path / "base", CountingEncoder())
    base, own = open_cache(tmp_path / "base", spec), open_cache(tmp_path / "own", spec)
    encode = CountingEncoder()
    more = texts + [state_text(_state((), observation="A new room."))]
    x, num_new = router_features(more, np.array([0, 1]), spec, [base, own], encode)
    assert num_new == 1 and own.keys == [state_key("A new room.")] and len(base.keys) == 2
    alone = featurize(["u"], texts, np.array([0]), spec, tmp_path / "base", CountingEncoder())[0][0]
    np.testing.assert_array_equal(x[0], alone)


def test_repeat_rate_counts_embeddings_an_earlier_state_already_needed():
    texts = [state_text(_state(())), state_text(_state(())), state_text(_state((("a", "b"),)))]
    assert repeat_rate(texts, "joint") == {"needed": 3, "distinct": 2, "hit_rate": pytest.approx(1 / 3)}
    # segments: 3 tasks + 3 observations + 1 history item needed, 3 distinct texts
    assert repeat_rate(texts, "segments") == {"needed": 7, "distinct": 3, "hit_rate": pytest.approx(4 / 7)}


def test_checkpoint_without_text_design_loads_as_joint_and_designs_change_the_input_size(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class SpecBeforeTextDesigns:  # the fields a checkpoint saved before text designs holds
        encoder: str = "toy"
        embedding_dim: int = 6
        scalar_features: tuple[str, ...] = ("step_frac",)
        horizon: float = 50.0

    config = TrainConfig(hidden_sizes=(4,))
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, 7)))["params"]
    save_router(tmp_path / "old", 0, params, config, SpecBeforeTextDesigns())
    assert load_router(tmp_path / "old").feature_spec == FeatureSpec("toy", 6, text_design="joint")
    segments = FeatureSpec("toy", 6, text_design="segments")
    wide = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, segments.input_dim)))["params"]
    save_router(tmp_path / "new", 0, wide, config, segments)
    assert load_router(tmp_path / "new", expected_spec=segments).feature_spec.input_dim == 19
    with pytest.raises(FeatureSpecError, match="unknown text design"):
        FeatureSpec(text_design="tail_first")


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_only_joint_cuts_the_current_observation_of_real_long_states():
    tokenizer, max_seq_length = load_tokenizer("all-MiniLM-L6-v2")
    texts = list(dict.fromkeys(row["state_text"] for row in read_steps(SHIPPED_DATASET / "steps.jsonl")[0]))
    long_texts = [t for t, n in zip(texts, token_counts(tokenizer, texts)) if n > max_seq_length]
    assert len(long_texts) > 50  # the shipped data has states past the 256-token window
    assert observation_cut(tokenizer, long_texts, "joint", max_seq_length).all()
    assert not observation_cut(tokenizer, long_texts, "obs_first", max_seq_length).any()
    assert not observation_cut(tokenizer, long_texts, "segments", max_seq_length).any()


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from hera_jax.features.cache import FeatureCache
    path, writer, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    cache = FeatureCache(path, "toy", 4)  # every writer opens the cache before any of them writes
    (go.parent / f"ready{writer}").touch()
    while not go.exists():
        time.sleep(0.001)
    for batch in range(15):
        ks = [f"w{writer}-{batch}-{i}" for i in range(8)]
        vectors = np.array([[writer, batch, i, 1.0] for i in range(8)], np.float32)  # exact in float16
        cache.add(ks, vectors, save=False)
        cache.flush()
        time.sleep(0.002)
""")


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_three_concurrent_writers_lose_no_embeddings(tmp_path):
    path, go = cache_path(tmp_path, "toy"), tmp_path / "go"
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(go)], env=env,
                                stderr=subprocess.PIPE, text=True) for w in range(3)]
    while not all((tmp_path / f"ready{w}").exists() for w in range(3)):
        assert all(proc.poll() is None for proc in writers), [proc.stderr.read() for proc in writers]
    go.touch()
    for proc in writers:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    cache = FeatureCache(path, "toy", 4)
    expected = {f"w{w}-{b}-{i}": [w, b, i, 1.0] for w in range(3) for b in range(15) for i in range(8)}
    assert sorted(cache.keys) == sorted(expected)
    np.testing.assert_array_equal(cache.lookup(list(expected)), np.array(list(expected.values()), np.float32))
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []  # no temp file is left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, as the cache was before unique temp names


@pytest.mark.parametrize("design", ["joint", "obs_first", "segments"])
def test_scorer_gives_cached_and_fresh_states_the_features_featurize_gives(tmp_path, design):
    from hera_jax.router.checkpoint import RouterBundle
    from hera_jax.router.scorer import RouterScorer, StateEmbedder, p_cloud_fn

    spec = FeatureSpec(encoder="toy", embedding_dim=8, text_design=design)
    texts = [state_text(_state(history)) for history in ((), (("go north", "Hallway."),))]
    steps = np.array([0, 1])
    featurize([state_key(t) for t in texts[:1]], texts[:1], steps[:1], spec, tmp_path / "dataset", CountingEncoder())
    reference, _ = featurize([state_key(t) for t in texts], texts, steps, spec, tmp_path / "reference",
                             CountingEncoder())
    config = TrainConfig(hidden_sizes=(4,))
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    bundle = RouterBundle(params, config, spec, {})
    embedder = StateEmbedder(spec, tmp_path / "eval", [tmp_path / "dataset"], encode=CountingEncoder())
    scorer = RouterScorer(bundle, embedder)  # the first state comes from the dataset's cache, the second is fresh
    np.testing.assert_array_equal(scorer.features(texts, steps), reference)
    # stage 2's path for a million repeated visits: the same rows, gathered on the device
    repeat, repeat_steps = [texts[i] for i in (1, 0, 1, 1)], np.array([1, 0, 4, 7])
    np.testing.assert_array_equal(np.asarray(scorer.device_features(repeat, repeat_steps)),
                                  scorer.features(repeat, repeat_steps))
    np.testing.assert_array_equal(scorer.score(texts, steps), scorer.p_cloud(reference))
    np.testing.assert_allclose(scorer.score(texts, steps), np.asarray(p_cloud_fn((4,))(params, reference)), atol=1e-6)
    assert embedder.num_encoded > 0  # the second state's new texts went to the evaluation's own cache
    dataset_cache = cache_path(tmp_path / "dataset", "toy", design)
    before = dataset_cache.read_bytes()
    embedder.flush()
    assert cache_path(tmp_path / "eval", "toy", design).exists()
    assert dataset_cache.read_bytes() == before  # the dataset's cache is only read
