"""Training one router on several datasets (experiments/il.py --extra-datasets): splits, labels and features stay
per dataset, mismatched datasets are refused with one clear line, the checkpoint names every dataset."""

from __future__ import annotations


import numpy as np
import pytest

from hera_jax.dataset import load_il_table, load_union_table, resolve_datasets
from hera_jax.envs.profiles import SHIPPED_DATASETS
from hera_jax.features import FeatureSpec, featurize
from hera_jax.features.cache import FeatureCacheError
from hera_jax.rollout.records import DatasetError, append_episode, write_json_atomic
from hera_jax.router.checkpoint import load_router
from hera_jax.router.il import build_features
from hera_jax.router.train import TrainConfig
from tests.conftest import make_steps

from hera_jax.router import il_app as il_cli

DIM = 6
SPEC = FeatureSpec(encoder="toy", embedding_dim=DIM)
STAND_INS = {"cloud": {"name": "gold-path-oracle", "kind": "stand-in"},
             "device": {"name": "perturbed-gold-device", "kind": "stand-in"}}


def _dataset(folder, env, tasks, settings=None, agents=None, manifest_env=True):
    """Per task: 2 train episodes, 1 dev, 1 test; device and cloud disagree on the step of each episode's index."""
    folder.mkdir(parents=True)
    manifest = {"agents": STAND_INS if agents is None else agents,
                "settings": {"history_k": 3, "max_obs_chars": 400, **(settings or {})}}
    if manifest_env:
        manifest["env"] = {"name": env}
    write_json_atomic(folder / "manifest.json", manifest)
    variation = 0
    for task in tasks:
        for split, count in (("train", 2), ("dev", 1), ("test", 1)):
            for j in range(count):
                pairs = [("a", "a"), ("b", "b"), ("c", "c")]
                pairs[(variation + 1) % 3] = ("wrong", "c")
                pairs[variation % 3] = ("wrong", "right")
                append_episode(folder / "steps.jsonl",
                               make_steps(f"{env}/{task}/{split}/{j}", task, split, pairs, variation=variation))
                variation += 1
    return folder


def _fill_cache(folder, value, dim=DIM):
    """Embed every state of `folder` into its own features cache with a constant vector (identifies the cache)."""
    table = load_il_table(folder, ())
    featurize(table.state_key, table.state_text, table.step, FeatureSpec(encoder="toy", embedding_dim=dim),
              folder / "features", encode=lambda texts: np.full((len(texts), dim), value, np.float32))


def _no_encoder(texts):
    raise AssertionError(f"every state should come from a dataset's own cache; asked to embed {len(texts)}")


@pytest.fixture
def two(tmp_path):
    a = _dataset(tmp_path / "a", "toy-a", ["a1", "a2"])
    b = _dataset(tmp_path / "b", "toy-b", ["b1", "b2"])
    return a, b


def test_union_keeps_each_datasets_rows_splits_and_labels(two):
    a, b = two
    ta, tb = load_il_table(a, ("a2",)), load_il_table(b, ())
    union = load_union_table([a, b], ("a2",))
    assert len(union) == len(ta) + len(tb)
    np.testing.assert_array_equal(union.label, np.concatenate([ta.label, tb.label]))
    np.testing.assert_array_equal(union.split, np.concatenate([ta.split, tb.split]))
    np.testing.assert_array_equal(union.source, [0] * len(ta) + [1] * len(tb))
    assert union.label.min() == 0 and union.label.max() == 1
    assert union.datasets == (str(a), str(b)) and union.unseen_tasks == ("a2",)
    assert set(union.task[union.mask("test_unseen")].tolist()) == {"a2"}
    assert union.state_key == ta.state_key + tb.state_key
    trained_on = union.trained_on()
    assert [(t["dataset"], t["env"], t["unseen_tasks"]) for t in trained_on] == [
        (str(a), "toy-a", ["a2"]), (str(b), "toy-b", [])]
    assert trained_on[0]["history_k"] == 3 and union.manifest["env"]["name"] == "toy-a + toy-b"
    # a single dataset is the plain table
    single = load_union_table([a], ())
    np.testing.assert_array_equal(single.label, load_il_table(a, ()).label)


def test_union_unseen_tasks_must_exist_somewhere(two):
    with pytest.raises(DatasetError, match=r"unseen task\(s\) \['melt'\] are in none of"):
        load_union_table(list(two), ("a2", "melt"))


def test_union_reads_each_datasets_own_features_cache(two):
    a, b = two
    _fill_cache(a, 1.0)
    _fill_cache(b, -1.0)
    union = load_union_table([a, b], ())
    features, num_new = build_features(union, SPEC, encode=_no_encoder)
    assert num_new == 0 and features.shape == (len(union), SPEC.input_dim)
    np.testing.assert_array_equal(features[union.source == 0, :DIM], 1.0)
    np.testing.assert_array_equal(features[union.source == 1, :DIM], -1.0)


def test_union_with_a_cache_of_another_feature_spec_is_refused(two):
    a, b = two
    _fill_cache(a, 1.0)
    _fill_cache(b, 1.0, dim=DIM + 2)
    union = load_union_table([a, b], ())
    with pytest.raises(FeatureCacheError, match=rf"{b / 'features'}.*holds {DIM + 2}-d embeddings"):
        build_features(union, SPEC, encode=_no_encoder)


@pytest.mark.parametrize("kind,match", [
    ("state_format", r"b/manifest.json: settings.history_k is 5 but .*a/manifest.json has 3"),
    ("agents", r"b/manifest.json: agents.device is .* IL labels of different agent pairs"),
    ("no_env", r"b/manifest.json: field env is missing"),
    ("same_task", r"task 'a1' is also in"),
    ("twice", r"a: dataset given twice"),
])
def test_mismatched_datasets_are_refused_with_one_clear_line(tmp_path, kind, match):
    a = _dataset(tmp_path / "a", "toy-a", ["a1"])
    if kind == "twice":
        dirs = [a, tmp_path / "." / "a"]
    else:
        b = _dataset(
            tmp_path / "b", "toy-b", ["a1"] if kind == "same_task" else ["b1"],
            settings={"history_k": 5} if kind == "state_format" else None,
            agents={**STAND_INS, "device": {"name": "gemma", "kind": "llm"}} if kind == "agents" else None,
            manifest_env=kind != "no_env",
        )
        dirs = [a, b]
    with pytest.raises(DatasetError, match=match) as info:
        load_union_table(dirs, None)
    assert "\n" not in str(info.value)


def test_resolve_datasets_takes_folders_and_env_names(tmp_path):
    assert resolve_datasets(["textworld_express:twc", str(tmp_path)]) == [
        SHIPPED_DATASETS["textworld_express:twc"], tmp_path]


def test_il_cli_trains_on_the_union_and_names_every_dataset(two, tmp_path):
    a, b = two
    rng = np.random.default_rng(0)
    def unit_random(texts):  # distinct vectors so the router has something to learn from; unit-norm as MiniLM's
        rows = rng.normal(size=(len(texts), DIM)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    for folder in (a, b):
        table = load_il_table(folder, ())
        featurize(table.state_key, table.state_text, table.step, SPEC, folder / "features", encode=unit_random)
    out = tmp_path / "run"
    summary = il_cli.train_il(il_cli.ILConfig(
        dataset=a, extra_datasets=(str(b),), features=FeatureSpec("toy", DIM), unseen_tasks=(),
        train=TrainConfig(hidden_sizes=(8,), max_epochs=3, patience=3, batch_size=8), out=out,
    ))
    assert summary["datasets"] == [str(a), str(b)] and summary["envs"] == ["toy-a", "toy-b"]
    assert summary["newly_embedded_states"] == 0
    assert set(summary["metrics_by_dataset"]) == {"toy-a", "toy-b"}
    # per-dataset metrics partition the union's states
    for split in ("train", "dev", "test"):
        assert sum(m[split]["states"] for m in summary["metrics_by_dataset"].values()) == \
            summary["metrics"][split]["states"]
    bundle = load_router(out / "checkpoint", expected_spec=SPEC)
    assert [t["env"] for t in bundle.meta["trained_on"]] == ["toy-a", "toy-b"]
    assert bundle.meta["il_summary"]["datasets"] == [str(a), str(b)]
