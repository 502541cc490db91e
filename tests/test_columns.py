"""The columnar load path (columns.py): the cached columns equal the validated rows' table, are rebuilt when the
records change, and a damaged cache is rebuilt, never trusted; each distinct state is featurized once with the
same result as featurizing every row."""

from __future__ import annotations

import dataclasses
import json

import blake3
import numpy as np
import pytest

from hera_jax.columns import columns_path, load_columns
from hera_jax.dataset import StepTable, load_il_table
from hera_jax.features import FeatureSpec, featurize, router_features, open_cache
from hera_jax.rollout.records import append_episode
from hera_jax.state import state_key
from tests.conftest import SHIPPED_DATASET, make_steps, write_toy_dataset

COLUMNS = ("episode_id", "task", "variation", "split", "step", "label", "success")


def _toy(tmp_path):
    episodes = []
    for j in range(6):
        split = ("train", "train", "dev", "test", "train", "dev")[j]
        pairs = [("a", "a"), ("x", "b"), ("c", "c")] if j % 2 else [("a", "a"), ("b", "b")]
        steps = make_steps(f"t{j % 2}/{split}/{j}", f"t{j % 2}", split, pairs, variation=j)
        if j % 3 == 0:  # a device that reports its confidence on some episodes (the others: NaN columns)
            steps = [dataclasses.replace(s, device_logprob=-0.25 * (i + j), device_p_top=0.5, device_margin=0.125,
                                         device_entropy=1.5) for i, s in enumerate(steps)]
        episodes.append(steps)
    # a repeated state: the first state of episode 0 again in a new episode (identical states share a key)
    again = make_steps("t0/train/again", "t0", "train", [("a", "a")], variation=0)
    first = episodes[0][0]
    episodes.append([dataclasses.replace(again[0], state_text=first.state_text, state_key=first.state_key)])
    return write_toy_dataset(tmp_path / "ds", episodes)


def assert_same_table(a: StepTable, b: StepTable) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.state_key == b.state_key and a.state_text == b.state_text
    assert set(a.device_signals) == set(b.device_signals)
    for name in a.device_signals:  # NaN where the device reported none: equal as NaN
        np.testing.assert_array_equal(a.device_signals[name], b.device_signals[name], err_msg=name)
    assert a.report.num_steps == b.report.num_steps and a.report.problems == b.report.problems


def test_cached_columns_equal_the_rows_table_and_are_used_on_the_second_load(tmp_path, monkeypatch):
    folder = _toy(tmp_path)
    from_rows = load_il_table(folder, (), use_cache=False)
    assert not columns_path(folder).exists()  # use_cache=False writes nothing
    first = load_il_table(folder, ())
    assert columns_path(folder).exists()
    import hera_jax.columns as columns_module

    def no_rows(*args, **kwargs):
        raise AssertionError("a matching columns cache must be read instead of the rows")

    monkeypatch.setattr(columns_module, "episodes_of_file", no_rows)
    cached = load_il_table(folder, ())
    assert_same_table(from_rows, first)
    assert_same_table(from_rows, cached)
    np.testing.assert_array_equal(cached.device_signals["device_logprob"][:2], [0.0, -0.25])
    assert np.isnan(cached.device_signals["device_margin"][2])  # episode 1 reported no confidence
    # identical states are held once
    assert len(cached.distinct_keys) == len(set(cached.state_key)) < len(cached)


def test_columns_are_rebuilt_when_the_records_change(tmp_path):
    folder = _toy(tmp_path)
    before = load_il_table(folder, ())
    append_episode(folder / "steps.jsonl", make_steps("t1/test/new", "t1", "test", [("q", "r")], variation=9))
    after = load_il_table(folder, ())
    assert len(after) == len(before) + 1 and "t1/test/new" in after.episode_id.tolist()
    assert_same_table(after, load_il_table(folder, (), use_cache=False))


def test_a_damaged_columns_cache_is_rebuilt(tmp_path):
    folder = _toy(tmp_path)
    expected = load_il_table(folder, (), use_cache=False)
    load_il_table(folder, ())
    path = columns_path(folder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_same_table(expected, load_il_table(folder, ()))
    assert_same_table(expected, load_il_table(folder, ()))  # and the rewritten cache is good


def test_the_shipped_dataset_loads_the_same_from_columns(tmp_path):
    # a copy: the test must not leave a columns cache in the shipped folder
    import shutil

    folder = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DATASET, folder, ignore=shutil.ignore_patterns("embeddings_*", "steps_columns.npz"))
    from_rows = load_il_table(folder, use_cache=False)
    load_il_table(folder)
    assert_same_table(from_rows, load_il_table(folder))
    np.testing.assert_array_equal(from_rows.label, load_columns(folder)[0]["label"])


@pytest.mark.parametrize("design", ["segments", "joint", "obs_first"])
def test_featurizing_distinct_states_equals_featurizing_every_row(tmp_path, design):
    folder = _toy(tmp_path)
    table = load_il_table(folder, ())
    dim = 5
    spec = FeatureSpec(encoder="toy", embedding_dim=dim, text_design=design)

    def encode(texts):  # deterministic per text, different across texts
        return np.stack([np.random.default_rng(int(state_key(t)[:8], 16)).normal(size=dim) for t in texts]).astype(np.float32)

    features, _ = featurize(table.state_key, table.state_text, table.step, spec, tmp_path / "cache", encode=encode)
    per_row, _ = router_features(table.state_text, table.step, spec, [open_cache(tmp_path / "cache", spec)],
                                 encode=encode, keys=table.state_key)
    np.testing.assert_array_equal(features, per_row)
    assert features.shape == (len(table), spec.input_dim)


def test_an_episode_copied_into_another_split_is_refused(tmp_path):
    from hera_jax.rollout.records import DatasetError

    folder = _toy(tmp_path)
    train = make_steps("t0/train/0", "t0", "train", [("a", "a"), ("b", "b")], variation=0)
    copied = [dataclasses.replace(s, episode_id="t0/test/copy", split="test") for s in train]
    append_episode(folder / "steps.jsonl", copied)
    with pytest.raises(DatasetError, match="like episode t0/train/0 .* leaks training data"):
        load_il_table(folder, ())


def test_the_first_steps_of_an_episode_copied_into_another_split_are_refused(tmp_path):
    from hera_jax.rollout.records import DatasetError

    folder = _toy(tmp_path)
    train = make_steps("t0/train/50", "t0", "train", [("a", "a"), ("b", "b"), ("c", "c")], variation=50)
    prefix = [dataclasses.replace(s, episode_id="t0/test/copy", split="test", done=i == 1, episode_steps=2)
              for i, s in enumerate(train[:2])]
    append_episode(folder / "steps.jsonl", train)
    append_episode(folder / "steps.jsonl", prefix)
    with pytest.raises(DatasetError, match="task 't0' variation 50 like episode t0/train/50"):
        load_il_table(folder, ())


def test_look_alike_variations_in_two_splits_are_reported_not_refused(tmp_path):
    folder = _toy(tmp_path)
    train = make_steps("t0/train/0", "t0", "train", [("a", "a"), ("b", "b")], variation=0)
    look_alike = [dataclasses.replace(s, episode_id="t0/test/other", split="test", variation=7) for s in train]
    append_episode(folder / "steps.jsonl", look_alike)
    table = load_il_table(folder, ())
    assert "t0/test/other" in table.episode_id.tolist()
    assert any("look-alike" in p and "t0/test/other" in p for p in table.report.notes)


def test_a_features_path_that_is_a_file_is_refused_before_embedding(tmp_path):
    from hera_jax.features import featurize_indexed
    from hera_jax.features.cache import FeatureCacheError

    folder = _toy(tmp_path)
    table = load_il_table(folder, ())
    (tmp_path / "a_file").write_text("x")

    def encode(texts):
        raise AssertionError("nothing may be embedded before the cache folder is checked")

    with pytest.raises(FeatureCacheError, match="is a file, not a folder"):
        featurize_indexed(table.distinct_keys, table.distinct_texts, table.state_index, table.step,
                          FeatureSpec(encoder="toy", embedding_dim=4), tmp_path / "a_file", encode=encode)


def test_a_leak_behind_a_look_alike_of_the_same_split_is_still_found(tmp_path):
    """E1 (test, variation 22), E2 (train, variation 11), E3 (test, variation 11), all state for state the same:
    E3 leaks E2 although the first episode with those states is E1."""
    from hera_jax.rollout.records import DatasetError

    folder = _toy(tmp_path)
    base = make_steps("t0/x", "t0", "train", [("a", "a"), ("b", "b")], variation=0)
    for episode, split, variation in (("E1", "test", 22), ("E2", "train", 11), ("E3", "test", 11)):
        append_episode(folder / "steps.jsonl",
                       [dataclasses.replace(s, episode_id=episode, split=split, variation=variation) for s in base])
    with pytest.raises(DatasetError, match="E3 .* like episode E2"):
        load_il_table(folder, ())


def test_the_columns_cache_is_not_written_when_the_records_change_while_they_are_read(tmp_path, monkeypatch):
    import hera_jax.columns as columns_module

    folder = _toy(tmp_path)
    real = columns_module.episodes_of_file

    def appending_while_reading(*args, **kwargs):
        yield from real(*args, **kwargs)
        append_episode(folder / "steps.jsonl", make_steps("t1/test/late", "t1", "test", [("q", "r")], variation=8))

    monkeypatch.setattr(columns_module, "episodes_of_file", appending_while_reading)
    load_il_table(folder, ())
    assert not columns_path(folder).exists()  # what was read is not what the file now holds
    monkeypatch.setattr(columns_module, "episodes_of_file", real)
    assert "t1/test/late" in load_il_table(folder, ()).episode_id.tolist()


def _no_hashing(monkeypatch):
    import hera_jax.columns as columns_module

    def refuse(path, *args, **kwargs):
        raise AssertionError(f"{path} was hashed although its stat was recorded with the cache")

    monkeypatch.setattr(columns_module, "digest_with_stat", refuse)
    monkeypatch.setattr(columns_module, "episodes_of_file", refuse)  # a whole read hashes the file as it reads


def test_a_later_load_trusts_the_recorded_stat_instead_of_hashing(tmp_path, monkeypatch):
    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)  # the toy file is written a moment before it is hashed
    folder = _toy(tmp_path)
    expected = load_il_table(folder, (), use_cache=False)
    load_il_table(folder, ())  # builds the cache and records the file's stat
    with monkeypatch.context() as patch:
        _no_hashing(patch)
        assert_same_table(expected, load_il_table(folder, ()))
    # a changed file has another stat: hashed and rebuilt, not trusted
    append_episode(folder / "steps.jsonl", make_steps("t1/test/new", "t1", "test", [("q", "r")], variation=9))
    assert "t1/test/new" in load_il_table(folder, ()).episode_id.tolist()


def test_a_file_changed_just_before_it_was_hashed_gets_no_recorded_stat(tmp_path, monkeypatch):
    # a write in the same timestamp tick could keep size, mtime and ctime: such a file is hashed at every load
    # until it has been still for STILL_FOR_NS, then its stat is recorded once
    import hera_jax.columns as columns_module
    import hera_jax.files as files_module

    folder = _toy(tmp_path)
    monkeypatch.setattr(files_module, "STILL_FOR_NS", 3600 * 10**9)
    load_il_table(folder, ())
    hashed = []
    real = columns_module.digest_with_stat
    monkeypatch.setattr(columns_module, "digest_with_stat", lambda path, how: hashed.append(path) or real(path, how))
    load_il_table(folder, ())
    assert hashed  # no stat recorded: the file was hashed
    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)
    monkeypatch.setattr(files_module, "_DIGESTS", {})  # a later process: the file has been still since
    load_il_table(folder, ())  # hashed once more, and now its stat is recorded with the cache
    hashed.clear()
    load_il_table(folder, ())
    assert not hashed


def test_a_cache_of_the_sha256_version_is_rebuilt_not_trusted_or_refused(tmp_path, monkeypatch):
    # a cache written before the key became blake3 (version 3, "steps_sha256"), its recorded stat the file's own
    import hashlib

    import hera_jax.columns as columns_module
    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)
    folder = _toy(tmp_path)
    steps, cache = folder / "steps.jsonl", columns_path(folder)
    expected = load_columns(folder, use_cache=False)
    load_columns(folder)
    with np.load(cache) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta = {**{k: v for k, v in meta.items() if k != "steps_digest"}, "version": 3,
            "steps_sha256": hashlib.sha256(steps.read_bytes()).hexdigest()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(cache, "wb") as f:
        np.savez(f, **arrays)
    read = []
    real = columns_module.episodes_of_file
    monkeypatch.setattr(columns_module, "episodes_of_file", lambda *a, **k: read.append(1) or real(*a, **k))
    columns, report = load_columns(folder)
    assert read  # the rows were read again
    assert_same_columns(expected[0], columns)
    assert report == expected[1]
    with np.load(cache) as z:
        meta = json.loads(z["meta"].tobytes())
    assert meta["version"] == columns_module.COLUMNS_VERSION and "steps_sha256" not in meta
    assert meta["steps_digest"] == blake3.blake3(steps.read_bytes()).hexdigest()


def test_digests_of_one_file_by_two_hashes_are_kept_apart(tmp_path, monkeypatch):
    import hashlib

    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "_DIGESTS", {})
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights" * 1000)
    assert files_module.digest_with_stat(path, "blake3")[0] == blake3.blake3(path.read_bytes()).hexdigest()
    assert files_module.sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert files_module.digest_with_stat(path, "blake3")[0] == blake3.blake3(path.read_bytes()).hexdigest()


def test_a_same_size_rewrite_is_not_taken_for_the_cached_records(tmp_path, monkeypatch):
    import os

    import hera_jax.files as files_module

    folder = _toy(tmp_path)
    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)
    load_il_table(folder, ())
    steps = folder / "steps.jsonl"
    stat = steps.stat()
    text = steps.read_text()
    steps.write_text(text.replace('"variation": 0', '"variation": 7', 1))  # same size, in place
    os.utime(steps, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime put back: ctime moved
    assert steps.stat().st_size == stat.st_size
    assert 7 in load_il_table(folder, ()).variation.tolist()


def test_a_path_swapped_between_files_never_pairs_one_files_stat_with_the_others_cache(tmp_path, monkeypatch):
    # steps.jsonl as a link switched from one version of the records to another and back: each load must give the
    # rows of the file the link points to at that moment
    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)
    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    v1, v2 = folder / "v1.jsonl", folder / "v2.jsonl"
    steps.rename(v1)
    v2.write_bytes(v1.read_bytes())
    append_episode(v2, make_steps("t1/test/v2", "t1", "test", [("q", "r")], variation=9))
    for target, has_v2 in ((v1, False), (v2, True), (v1, False), (v2, True)):
        steps.unlink(missing_ok=True)
        steps.symlink_to(target.name)
        assert ("t1/test/v2" in load_il_table(folder, ()).episode_id.tolist()) == has_v2, target.name


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_a_file_written_while_it_is_hashed_gets_no_stat_and_no_kept_digest(tmp_path, monkeypatch, algorithm):
    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "STILL_FOR_NS", 0)
    path = tmp_path / "steps.jsonl"
    path.write_bytes(b"a" * (1 << 23))  # two blocks: the write lands between them
    real = files_module.HASHES[algorithm]

    class AppendingMidway:
        def __init__(self):
            self.inner, self.blocks = real(), 0

        def update(self, block):
            self.blocks += 1
            if self.blocks == 1:
                with open(path, "ab") as f:
                    f.write(b"late line\n")
            self.inner.update(block)

        def hexdigest(self):
            return self.inner.hexdigest()

    monkeypatch.setitem(files_module.HASHES, algorithm, AppendingMidway)
    digest, signature = files_module.digest_with_stat(path, algorithm)
    assert signature is None
    monkeypatch.setitem(files_module.HASHES, algorithm, real)
    digest_after, signature_after = files_module.digest_with_stat(path, algorithm)
    assert digest_after == real(path.read_bytes()).hexdigest() and signature_after is not None
    assert signature_after[0] == path.stat().st_size


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_whole_read_keys_the_cache_by_the_files_hash_without_a_second_pass(tmp_path, monkeypatch, gzipped):
    import gzip

    import hera_jax.columns as columns_module

    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    if gzipped:
        (folder / "steps.jsonl.gz").write_bytes(gzip.compress(steps.read_bytes()))
        steps.unlink()
        steps = folder / "steps.jsonl.gz"
    expected = load_columns(folder, use_cache=False)
    with monkeypatch.context() as patch:
        patch.setattr(columns_module, "digest_with_stat", lambda path, how: pytest.fail(f"{path} hashed in a pass"))
        assert_same_columns(expected[0], load_columns(folder)[0])
    with np.load(columns_path(folder)) as z:
        meta = json.loads(z["meta"].tobytes())
    assert meta["steps_digest"] == blake3.blake3(steps.read_bytes()).hexdigest()
    assert meta["steps_bytes"] == steps.stat().st_size
    # the next load hashes the file (its stat was not recorded: just written), and the hash matches: no rows read
    monkeypatch.setattr(columns_module, "episodes_of_file", lambda *a, **k: pytest.fail("rows read again"))
    cached, report = load_columns(folder)
    assert_same_columns(expected[0], cached)
    assert report == expected[1]


def test_a_cut_gzip_is_hashed_to_its_end_and_its_complete_episodes_load(tmp_path):
    import gzip

    from hera_jax.rollout.records import LoadReport, episodes_of_file

    folder = _toy(tmp_path)
    packed = gzip.compress((folder / "steps.jsonl").read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    digest, report = blake3.blake3(), LoadReport(path="")
    with open(path, "rb") as f:
        episodes = list(episodes_of_file(f, path, report, digest=digest))
        assert f.tell() == path.stat().st_size
    assert digest.hexdigest() == blake3.blake3(path.read_bytes()).hexdigest()
    assert episodes and any("cut or corrupt" in p for p in report.problems), report.problems


def assert_same_columns(a: dict, b: dict) -> None:
    """Equal columns, vocabularies and distinct states in the same order (NaN equal to NaN)."""
    assert set(a) == set(b)
    for name in a:
        if isinstance(a[name], list):
            assert a[name] == b[name], name
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
            assert a[name].dtype == b[name].dtype, name


def test_concatenated_columns_equal_the_columns_of_all_rows_at_every_split(tmp_path):
    from hera_jax.columns import concat_columns, rows_to_columns
    from hera_jax.rollout.records import read_steps

    rows, _ = read_steps(_toy(tmp_path) / "steps.jsonl")
    whole = rows_to_columns(rows)
    for cut in range(len(rows) + 1):
        assert_same_columns(whole, concat_columns(rows_to_columns(rows[:cut]), rows_to_columns(rows[cut:])))
        for second in range(cut, len(rows) + 1, 3):  # and in three parts, as the workers of a read in parts give them
            assert_same_columns(whole, concat_columns(*(rows_to_columns(part, decoded=False) for part in (
                rows[:cut], rows[cut:second], rows[second:]))))


def test_a_string_column_holds_its_vocabularys_own_strings_not_a_fixed_width_copy_per_row(tmp_path):
    from hera_jax.columns import CODED

    folder = _toy(tmp_path)
    for columns, _ in (load_columns(folder, use_cache=False), load_columns(folder), load_columns(folder)):
        for name in CODED:
            column, vocab, codes = columns[name], columns[f"{name}_vocab"], columns[f"{name}_codes"]
            assert column.dtype == object and len(column) == len(codes) > 0, name
            assert all(column[i] is vocab[code] for i, code in enumerate(codes.tolist())), name
    table = load_il_table(folder, ["t1"])  # the unseen tasks' rows get a new split: still one object a value
    assert table.split.dtype == object and set(table.split.tolist()) >= {"train", "test_unseen"}


def test_columns_without_their_decoded_strings_hold_the_same_codes_and_nothing_else_differs(tmp_path):
    from hera_jax.columns import CODED, rows_to_columns
    from hera_jax.rollout.records import read_steps

    rows, _ = read_steps(_toy(tmp_path) / "steps.jsonl")
    decoded, coded = rows_to_columns(rows), rows_to_columns(iter(rows), decoded=False)
    assert set(decoded) - set(coded) == set(CODED)
    for name in coded:
        if isinstance(coded[name], np.ndarray):
            np.testing.assert_array_equal(coded[name], decoded[name], err_msg=name)
            assert coded[name].dtype == decoded[name].dtype, name
        else:
            assert coded[name] == decoded[name], name


def _rows_refused(monkeypatch):
    import hera_jax.columns as columns_module

    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was read again although only episodes were appended")

    monkeypatch.setattr(columns_module, "episodes_of_file", refuse)


def _fresh_process(monkeypatch):
    import hera_jax.files as files_module

    monkeypatch.setattr(files_module, "_DIGESTS", {})


def test_appended_episodes_are_the_only_lines_read_and_the_columns_equal_a_full_read(tmp_path, monkeypatch):
    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    load_columns(folder)
    old = make_steps("t0/train/0", "t0", "train", [("a", "a")])[0]  # an earlier state, in a new episode
    append_episode(steps, [dataclasses.replace(s, state_text=old.state_text, state_key=old.state_key) if i == 0
                           else s for i, s in enumerate(make_steps("t2/dev/new", "t2", "dev", [("a", "a"), ("m", "n")],
                                                                   variation=11))])
    append_episode(steps, make_steps("t1/test/new", "t1", "test", [("q", "r")], variation=9))
    with monkeypatch.context() as patch:
        _rows_refused(patch)
        _fresh_process(patch)
        appended, report = load_columns(folder)
    full, full_report = load_columns(folder, use_cache=False)
    assert_same_columns(full, appended)
    assert report == full_report and report.num_episodes == 9
    assert "t2" in appended["task_vocab"] and appended["state_index"][-3] == 0
    with monkeypatch.context() as patch:  # the extended cache stands for the grown file in the next process
        _rows_refused(patch)
        _fresh_process(patch)
        assert_same_columns(full, load_columns(folder)[0])


def test_problems_in_appended_lines_are_reported_as_a_full_read_reports_them(tmp_path, monkeypatch):
    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    load_columns(folder)
    append_episode(steps, make_steps("t1/test/new", "t1", "test", [("q", "r")], variation=9))
    with open(steps, "ab") as f:
        f.write(b'{"not": "a step"}\n{"not": "a step"}\n\n')
    append_episode(steps, make_steps("t0/train/0", "t0", "train", [("a", "a")]))  # an id seen before the append
    append_episode(steps, make_steps("t1/test/last", "t1", "test", [("q", "r")], variation=12))
    cut = make_steps("t1/dev/cut", "t1", "dev", [("a", "a"), ("b", "b")], variation=10)

    def write_raw(step):  # as a writer killed mid-episode left it (append_episode would first drop a cut tail)
        with open(steps, "ab") as f:
            f.write(json.dumps(dataclasses.asdict(step)).encode() + b"\n")

    write_raw(cut[0])
    with monkeypatch.context() as patch:
        _rows_refused(patch)
        appended, report = load_columns(folder)
    full, full_report = load_columns(folder, use_cache=False)
    assert_same_columns(full, appended)
    assert report == full_report and len(report.problems) == 3, report.problems
    # a cache of a read with problems is not extended (what is appended could change how a problem at its end
    # reads): the whole file is read again
    write_raw(make_steps("t1/test/later", "t1", "test", [("q", "r")], variation=13)[0])
    iter_calls = []
    import hera_jax.columns as columns_module

    real = columns_module.episodes_of_file
    monkeypatch.setattr(columns_module, "episodes_of_file", lambda *a, **k: iter_calls.append(1) or real(*a, **k))
    assert_same_columns(load_columns(folder, use_cache=False)[0], load_columns(folder)[0])
    assert iter_calls


@pytest.mark.parametrize("change", ["continues_last_episode", "continues_an_id_ending_in_nul", "edited_before_the_end",
                                    "no_newline_at_the_end"])
def test_a_file_that_is_not_the_cached_one_with_lines_appended_is_read_whole(tmp_path, monkeypatch, change):
    import hera_jax.columns as columns_module

    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    if change == "no_newline_at_the_end":
        steps.write_bytes(steps.read_bytes().rstrip(b"\n"))
    load_columns(folder)
    if change == "continues_an_id_ending_in_nul":  # numpy string arrays drop a trailing NUL: ids are not read there
        append_episode(steps, make_steps("t0/train/nul\0", "t0", "train", [("a", "a")]))
        load_columns(folder)
    if change.startswith("continues"):  # a step after the last episode's last: a full read drops both
        episode_id = "t0/train/again" if change == "continues_last_episode" else "t0/train/nul\0"
        last = make_steps(episode_id, "t0", "train", [("a", "a"), ("b", "b")])[1]
        with open(steps, "ab") as f:
            f.write(json.dumps(dataclasses.asdict(last)).encode() + b"\n")
    else:
        if change == "edited_before_the_end":
            steps.write_bytes(steps.read_bytes().replace(b'"variation": 0', b'"variation": 7', 1))
        append_episode(steps, make_steps("t1/test/new", "t1", "test", [("q", "r")], variation=9))
    read_whole = []
    real = columns_module.episodes_of_file
    monkeypatch.setattr(columns_module, "episodes_of_file", lambda *a, **k: read_whole.append(1) or real(*a, **k))
    cached, report = load_columns(folder)
    full, full_report = load_columns(folder, use_cache=False)
    assert read_whole
    assert_same_columns(full, cached)
    assert report == full_report
    if change == "continues_last_episode":
        assert "t0/train/again" not in cached["episode_id_vocab"] and report.problems


def test_a_moved_dataset_reports_its_problems_under_its_new_path(tmp_path):
    import shutil

    folder = _toy(tmp_path)
    with open(folder / "steps.jsonl", "ab") as f:
        f.write(b"not a record\n")
    load_columns(folder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)  # with its columns cache
    report = load_columns(moved)[1]
    assert report == load_columns(moved, use_cache=False)[1]
    assert report.problems[0].startswith(f"{moved / 'steps.jsonl'}:") and str(folder) not in report.path


def test_a_whole_read_refuses_a_steps_file_beside_a_different_gzipped_one(tmp_path):
    import gzip

    from hera_jax.columns import load_step_columns
    from hera_jax.rollout.records import DatasetError

    folder = _toy(tmp_path)
    steps = folder / "steps.jsonl"
    (folder / "steps.jsonl.gz").write_bytes(gzip.compress(b"{\"other\": 1}\n"))
    with pytest.raises(DatasetError, match="ambiguous"):
        load_step_columns(steps, columns_path(folder))


def _many_episodes(tmp_path, count: int = 24):
    episodes = []
    for j in range(count):
        split = ("train", "dev", "test")[j % 3]
        pairs = [("a", "a"), ("x", "b"), ("c", "c"), ("d", "e")][: 2 + j % 3]
        episodes.append(make_steps(f"t{j % 4}/{split}/{j}", f"t{j % 4}", split, pairs, variation=j))
    return write_toy_dataset(tmp_path / "many", episodes)


@pytest.mark.parametrize("layout", ["clean", "bad_lines", "cut_and_rerun", "kept_twice", "bad_line_at_a_cut"])
def test_a_file_read_in_parts_by_worker_processes_equals_a_read_in_one(tmp_path, monkeypatch, layout):
    """A large plain steps file is validated in parts by worker processes, cut at episode starts: the columns, the
    report (problems numbered from the file's first line, line problems before episode problems) and the cache
    equal those of one process reading it; an episode id kept in two parts, or an odd line at a cut, is left to
    the one-process read."""
    import hera_jax.columns as columns_module

    folder = _many_episodes(tmp_path)
    steps = folder / "steps.jsonl"
    lines = steps.read_bytes().splitlines(keepends=True)
    quarter = len(lines) // 4
    if layout == "bad_lines":  # a lone bad line, a run of two, and a cut episode (an episode problem) in each part
        lines[2] = b"{not json\n"
        lines[quarter + 3] = lines[quarter + 4] = b'{"episode_id": 3}\n'
        del lines[3 * quarter + 2]
    elif layout == "cut_and_rerun":  # a run killed mid-episode, then the episode written again after it
        first = json.loads(lines[2 * quarter])
        rerun = [json.dumps({**first, "episode_id": "t9/train/rerun", "step": i, "episode_steps": 3}).encode() + b"\n"
                 for i in range(3)]
        lines[2 * quarter:2 * quarter] = rerun[:2] + rerun
    elif layout == "kept_twice":
        lines += lines[: lines.index(next(line for line in lines[1:] if b'"step": 0' in line))]
    steps.write_bytes(b"".join(lines))
    if layout == "bad_line_at_a_cut":  # the line that starts the second half is not a row
        size = steps.stat().st_size
        with open(steps, "r+b") as f:
            f.seek(size // 2)
            f.readline()
            at = f.tell()
        data = steps.read_bytes()
        steps.write_bytes(data[:at] + b"garbage\n" + data[at:])

    monkeypatch.setattr(columns_module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    expected, expected_report = load_columns(folder, use_cache=False)  # one core: one process
    monkeypatch.setattr(columns_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(columns_module, "PARALLEL_MIN_BYTES", 1)
    in_parts = []
    real = columns_module._read_in_parts
    monkeypatch.setattr(columns_module, "_read_in_parts", lambda *a: in_parts.append(real(*a)) or in_parts[-1])
    columns, report = load_columns(folder)
    assert (in_parts[0] is not None) == (layout in ("clean", "bad_lines", "cut_and_rerun")), layout
    assert_same_columns(expected, columns)
    assert report == expected_report
    if layout in ("bad_lines", "cut_and_rerun"):
        assert report.problems
    monkeypatch.setattr(columns_module, "_read_in_parts", lambda *a: pytest.fail("the file was read again"))
    cached, cached_report = load_columns(folder)  # the cache that read wrote
    assert_same_columns(expected, cached)
    assert cached_report == expected_report


def test_a_part_worker_imports_its_parents_hera_jax_not_one_in_its_working_folder(tmp_path):
    import os
    import subprocess
    import sys

    import hera_jax.columns as columns_module

    folder = _many_episodes(tmp_path)
    steps = folder / "steps.jsonl"
    decoy = tmp_path / "elsewhere" / "hera_jax"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the copy in the working folder was imported')\n")
    out = tmp_path / "part.npz"
    worker = subprocess.Popen([sys.executable, "-c", columns_module._PART_WORKER, columns_module._PACKAGE_ROOT,
                               str(os.getpid()), str(steps), "0", str(steps.stat().st_size), str(out)],
                              cwd=decoy.parent, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()[-2000:]  # its stdin open: its parent is there
    finally:
        worker.stdin.close()
        worker.stderr.close()
    part, report, line_problems = columns_module._read_part_file(out)
    assert report.num_steps == len(part["step"]) > 0 and line_problems == 0


def test_a_failed_part_worker_is_reported_and_the_file_read_in_one_process(tmp_path, monkeypatch):
    """A worker that fails costs a second read: the reader warns with what the worker said, then gives the columns
    and report of one process's read."""
    import hera_jax.columns as columns_module

    folder = _many_episodes(tmp_path)
    monkeypatch.setattr(columns_module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    expected, expected_report = load_columns(folder, use_cache=False)
    monkeypatch.setattr(columns_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(columns_module, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(columns_module, "_PART_WORKER", "import sys; sys.exit('no space left on device (a test)')")
    with pytest.warns(UserWarning, match=r"reading in parts failed, the worker for bytes 0-\d+ exited with status 1: "
                                         r"no space left on device \(a test\); reading it in one process"):
        columns, report = load_columns(folder)
    assert_same_columns(expected, columns)
    assert report == expected_report


def test_a_reader_killed_outright_leaves_no_temporary_folder_behind(tmp_path):
    """A reader killed with SIGKILL cannot remove its temporary folder: its part workers, seeing it gone, remove it
    and end without leaving a part."""
    import signal
    import subprocess
    import sys
    import time

    folder = _many_episodes(tmp_path, count=300)
    temp = tmp_path / "temp"
    temp.mkdir()
    reader = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, tempfile; tempfile.tempdir = sys.argv[2]; os.sched_getaffinity = lambda pid: {0, 1}; "
        "import hera_jax.columns as c; c.PARALLEL_MIN_BYTES = 1; c.load_columns(sys.argv[1], use_cache=False)"),
        str(folder), str(temp)])
    try:
        deadline = time.monotonic() + 120
        while not list(temp.glob("hera_read_*/part_1.err")):  # both workers started (or starting)
            assert reader.poll() is None, "the reader ended before its workers started"
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.005)
        reader.send_signal(signal.SIGKILL)
    finally:
        reader.kill()
        reader.wait()
    deadline = time.monotonic() + 120
    while list(temp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(temp.iterdir()) == []


def test_a_part_worker_whose_parent_is_gone_leaves_a_folder_not_named_as_a_readers_alone(tmp_path):
    """A worker removes its parent's folder only if it is a reader's temporary folder (named so)."""
    import os
    import subprocess
    import sys

    import hera_jax.columns as columns_module

    steps = _many_episodes(tmp_path, count=3000) / "steps.jsonl"  # long enough for the worker to see its stdin close
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    worker = subprocess.Popen([sys.executable, "-c", columns_module._PART_WORKER, columns_module._PACKAGE_ROOT,
                               str(os.getpid()), str(steps), "0", str(steps.stat().st_size), str(mine / "part_0.npz")],
                              stdin=subprocess.PIPE)
    worker.stdin.close()  # its parent seen gone
    assert worker.wait(timeout=120) == 1  # ended by its parent's going, not done
    assert (mine / "notes.txt").read_text() == "kept"
