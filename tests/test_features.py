import numpy as np
import pytest

from hera_jax.features import FeatureCacheError, FeatureSpec, featurize
from hera_jax.features.cache import FeatureCache, cache_path


class CountingEncoder:
    """Deterministic text -> vector map that records how many texts it was asked to embed."""

    def __init__(self, dim=8):
        self.dim = dim
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.stack([r.normal(size=self.dim) for r in rng]).astype(np.float32)


def test_each_distinct_state_is_embedded_once_and_cache_is_reused(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=8, scalar_features=("step_frac",), horizon=10,
                       text_design="joint")
    keys, texts, steps = ["k1", "k2", "k1", "k3"], ["a", "b", "a", "c"], np.array([0, 5, 0, 20])
    enc = CountingEncoder()
    features, num_new = featurize(keys, texts, steps, spec, tmp_path, encode=enc)
    assert num_new == 3 and enc.calls == [3]
    assert features.shape == (4, 9)
    np.testing.assert_array_equal(features[0], features[2])
    np.testing.assert_allclose(features[:, -1], [0.0, 0.5, 0.0, 1.0])
    # Second run in a fresh process-like object: nothing new is embedded and the vectors are identical.
    enc2 = CountingEncoder()
    again, num_new2 = featurize(keys, texts, steps, spec, tmp_path, encode=enc2)
    assert num_new2 == 0 and enc2.calls == []
    np.testing.assert_array_equal(again, features)
    # A new state adds exactly one embedding.
    _, num_new3 = featurize(keys + ["k4"], texts + ["d"], np.append(steps, 1), spec, tmp_path, encode=enc2)
    assert num_new3 == 1 and enc2.calls == [1]


def test_cache_from_another_encoder_or_dimension_is_refused(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=8, text_design="joint")
    featurize(["k"], ["a"], np.array([0]), spec, tmp_path, encode=CountingEncoder())
    path = cache_path(tmp_path, "toy")
    with pytest.raises(FeatureCacheError, match="built with encoder 'toy', not 'other'"):
        FeatureCache(path, "other")
    with pytest.raises(FeatureCacheError, match="8-d embeddings but the encoder gives 16-d"):
        FeatureCache(path, "toy", dim=16)


def test_encoder_output_dimension_must_match_spec(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=16, text_design="joint")
    with pytest.raises(FeatureCacheError):
        featurize(["k"], ["a"], np.array([0]), spec, tmp_path, encode=CountingEncoder(dim=8))


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    path = cache_path(tmp_path, "toy")
    path.write_bytes(b"not an npz")
    with pytest.raises(FeatureCacheError, match="unreadable features cache"):
        FeatureCache(path, "toy")


@pytest.mark.slow
def test_shipped_minilm_encoder_loads_offline_and_embeds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from hera_jax.features import sentence_encode_fn

    encode = sentence_encode_fn(show_progress=False)
    vectors = encode(["Task: boil water. Now: kitchen", "Task: boil water. Now: kitchen!", "a red apple"])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_unknown_hub_model_fails_with_a_clear_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from hera_jax.features import EncoderUnavailableError
    from hera_jax.features.encoder import load_encoder

    with pytest.raises(EncoderUnavailableError, match="this run does not download models"):
        load_encoder("someone/not-a-cached-model")
