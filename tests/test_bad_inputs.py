"""Bad inputs a user can hit (issue 14): non-finite values, bad rows, bad manifests. Each is stopped or skipped
with a one-line report naming the file and line/field (or the step/epoch), and nothing broken is written."""

from __future__ import annotations

import dataclasses

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
from hera_jax.dataset import load_il_table
from hera_jax.features import FeatureCache, FeatureCacheError, FeatureSpec, FeatureSpecError, sentence_encode_fn
from hera_jax.features.cache import cache_path, content_digest
from hera_jax.rollout.collect import COLLECT_POLICY, collect, plan_episodes
from hera_jax.rollout.engine import Job, Policy, WorkerSetup, run_jobs, single_env
from hera_jax.rollout.episode import EpisodeSettings, EpisodeSpec, always
from hera_jax.rollout.records import DatasetError, completed_episode_ids, read_steps, write_json_atomic
from hera_jax.router import checkpoint as checkpoint_module
from hera_jax.router.checkpoint import CheckpointError, latest_step, load_router, save_router
from hera_jax.router.il import build_features, il_train_data, train_and_evaluate
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import NonFiniteError, TrainConfig, check_finite_result, make_train
from tests.conftest import ROOT
from tests.test_rl_loop import DIM, KeyRoomEnv, bag_of_words

from hera_jax.router import il_app as il_cli

ENCODER = "toy-bag-of-words"
SPEC = FeatureSpec(encoder=ENCODER, embedding_dim=DIM, text_design="joint")  # the cache these tests damage
SMALL_TRAIN = TrainConfig(hidden_sizes=(16,), max_epochs=4, patience=4, batch_size=16)
SETTINGS = EpisodeSettings(replay="device", history_k=2, max_obs_chars=200, max_steps=12)
MANIFEST = {"env": {"name": "keyroom"}, "agents": {}, "settings": {"history_k": 2, "max_obs_chars": 200}}


def _device():
    return PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8)


def _setup(env, policy: str, actor: str) -> WorkerSetup:
    return WorkerSetup(single_env(env), GoldPathOracle(), _device(), {policy: Policy(always(actor))}, SETTINGS)


def _collect(folder: Path, seed: int = 0, per_split=None) -> dict:
    env = KeyRoomEnv()
    specs = plan_episodes(env, ["t1"], per_split or {"train": 3, "dev": 2, "test": 2}, mode="il", seed=seed)
    setup = _setup(env, COLLECT_POLICY, "cloud")
    return collect(specs, lambda: setup, folder, MANIFEST, show_progress=False, setup=setup)


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    """A collected KeyRoom dataset (7 episodes) with a features cache of every state (toy encoder)."""
    folder = tmp_path_factory.mktemp("keyroom")
    _collect(folder)
    table = load_il_table(folder, ())
    build_features(table, SPEC, encode=bag_of_words)
    return folder


def _copy(dataset: Path, to: Path) -> Path:
    shutil.copytree(dataset, to)
    return to


# (kind, field named in the report, how a valid line is damaged: dict -> dict, or bytes -> bytes)
BAD_ROWS = [
    ("string step", "step", lambda r: {**r, "step": str(r["step"])}),
    ("integer action", "action", lambda r: {**r, "action": 5}),
    ("null state_key", "state_key", lambda r: {**r, "state_key": None}),
    ("empty state_key", "state_key", lambda r: {**r, "state_key": ""}),
    ("missing field", "missing field(s) reward", lambda r: {k: v for k, v in r.items() if k != "reward"}),
    ("int for bool", "success", lambda r: {**r, "success": 1}),
    ("unknown split", "split", lambda r: {**r, "split": "validation"}),
    ("unknown actor", "actor", lambda r: {**r, "actor": "human"}),
    ("NaN reward", "reward", lambda r: {**r, "reward": float("nan")}),
    ("not an object", "row", lambda r: [r["episode_id"]]),
    ("non-UTF-8 byte", "not valid UTF-8", b"\xff"),
]
BAD_LINE = 2  # the second step of the first episode


def _damage(steps: Path, how) -> str:
    """Damage line BAD_LINE of `steps`; returns the episode id that line belonged to."""
    lines = steps.read_bytes().splitlines(keepends=True)
    row = json.loads(lines[BAD_LINE - 1])
    if isinstance(how, bytes):
        lines[BAD_LINE - 1] = lines[BAD_LINE - 1].replace(b'"state_text": "', b'"state_text": "' + how, 1)
    else:
        lines[BAD_LINE - 1] = (json.dumps(how(row)) + "\n").encode()
    steps.write_bytes(b"".join(lines))
    return row["episode_id"]


def _assert_reported(problems: list[str], steps: Path, field: str, episode: str) -> None:
    line_problem = [p for p in problems if p.startswith(f"{steps}:{BAD_LINE}: ")]
    assert len(line_problem) == 1 and field in line_problem[0], problems
    assert "\n" not in line_problem[0]
    assert any(f"episode {episode} has" in p and "skipped" in p for p in problems), problems


@pytest.mark.parametrize("kind,field,how", BAD_ROWS, ids=[k for k, _, _ in BAD_ROWS])
def test_bad_row_is_reported_and_its_episode_skipped_then_redone_by_a_resumed_collect(
    clean_dataset, tmp_path, kind, field, how
):
    clean_rows, _ = read_steps(clean_dataset / "steps.jsonl")
    dataset = _copy(clean_dataset, tmp_path / "ds")
    steps = dataset / "steps.jsonl"
    episode = _damage(steps, how)

    # il.py's and rl_iter.py's data path: the table loads without the damaged episode, the problem is reported
    table = load_il_table(dataset, ())
    _assert_reported(table.report.problems, steps, field, episode)
    assert episode not in set(table.episode_id.tolist())
    assert len(set(table.episode_id.tolist())) == 6 and all(isinstance(k, str) and k for k in table.state_key)
    # no cache is written from invalid keys: a fresh cache built from this table reloads with valid keys only
    features, _ = build_features(table, SPEC, tmp_path / "features", encode=bag_of_words)
    assert np.isfinite(features).all()
    reloaded = FeatureCache(cache_path(tmp_path / "features", ENCODER), ENCODER, DIM)
    assert all(isinstance(k, str) and k for k in reloaded.keys)

    # the resume path of collect.py / evaluate.py: the damaged episode is not "done", so it is redone once
    assert episode not in completed_episode_ids(steps)
    summary = _collect(dataset)
    assert summary["new_episodes"] == 1 and summary["num_episodes"] == 7
    rows, report = read_steps(steps)
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, clean_rows))  # the redone episode is identical
    assert not any("appears twice" in p for p in report.problems)


ROLLOUT_BAD_ROWS = BAD_ROWS[:3] + BAD_ROWS[-2:]


@pytest.mark.parametrize("kind,field,how", ROLLOUT_BAD_ROWS, ids=[k for k, _, _ in ROLLOUT_BAD_ROWS])
def test_bad_row_in_rl_rollouts_is_reported_and_redone(tmp_path, kind, field, how):
    """rl_iter.py's (and evaluate.py's) rollouts.jsonl: written, damaged, then read again by a resumed run."""
    jobs = [Job(EpisodeSpec("keyroom", "t1", v, "train", f"rl/t1/{v}"), "device") for v in (0, 1)]
    path = tmp_path / "rollouts.jsonl"

    def run_and_read() -> list[dict]:  # the engine run the RL loop and evaluate.py make, then their reader
        setup = _setup(KeyRoomEnv(), "device", "device")
        run_jobs(jobs, path, lambda: setup, show_progress=False, setup=setup)
        return read_steps(path)[0]

    clean = run_and_read()
    episode = _damage(path, how)
    rows, report = read_steps(path)
    _assert_reported(report.problems, path, field, episode)
    assert {r["episode_id"] for r in rows} == {"rl/t1/0", "rl/t1/1"} - {episode}
    again = run_and_read()
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, clean))


def test_il_cli_on_a_damaged_dataset_reports_file_line_field_and_exits_0(clean_dataset, tmp_path, script_in_process):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    steps = dataset / "steps.jsonl"
    _damage(steps, lambda r: {**r, "step": "one"})
    with open(steps, "ab") as f:
        f.write(b'{"episode_id": "x", "state_text": "caf\xe9"}\n')  # latin-1, not UTF-8
    code, stdout, stderr = script_in_process(
        "il.py", "--dataset", str(dataset), "--out", str(tmp_path / "run"), "--features.encoder", ENCODER,
        "--features.embedding-dim", str(DIM), "--features.text-design", "joint", "--train.hidden-sizes", "16",
        "--train.max-epochs", "3", "--train.batch-size", "16")
    output = "".join((stdout + stderr).split())  # rich wraps long lines, long paths even inside a word
    assert code == 0, stdout + stderr
    assert "Traceback" not in output
    assert "".join(f"{steps}:{BAD_LINE}: step: Input should be a valid integer".split()) in output
    num_lines = len(steps.read_bytes().splitlines())
    assert "".join(f"{steps}:{num_lines}: not valid UTF-8".split()) in output
    assert (tmp_path / "run" / "metrics.json").exists()


# ---- non-finite values ------------------------------------------------------------------------------------------


def _poison_cache(dataset: Path, text_design: str = "joint") -> str:
    """Set one embedding of the dataset's cache of `text_design` to NaN; returns its key."""
    path = cache_path(dataset / "features", ENCODER, text_design)
    cache = FeatureCache(path, ENCODER, DIM)
    key = cache.keys[3]
    embeddings = cache.embeddings.copy()
    embeddings[3, 0] = np.nan
    stored = embeddings.astype(np.float16)  # checksummed like every cache hera_jax writes: only the NaN is wrong
    np.savez(path, keys=np.asarray(cache.keys), embeddings=stored, meta=np.asarray(json.dumps(
        {"model": ENCODER, "dim": DIM, "count": len(cache.keys), "sha256": content_digest(cache.keys, stored)})))
    return key


def test_nan_in_features_cache_stops_il_naming_cache_and_state_key_and_writes_nothing(clean_dataset, tmp_path):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    key = _poison_cache(dataset)
    out = tmp_path / "run"
    config = il_cli.ILConfig(dataset=dataset, out=out, features=SPEC, train=SMALL_TRAIN)
    with pytest.raises(FeatureCacheError) as info:
        il_cli.train_il(config)
    message = str(info.value)
    assert str(cache_path(dataset / "features", ENCODER)) in message and repr(key) in message
    assert "\n" not in message
    assert not out.exists()


def test_nan_in_a_segments_cache_names_that_file_not_the_joint_one(clean_dataset, tmp_path):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    segments = dataclasses.replace(SPEC, text_design="segments")
    build_features(load_il_table(dataset, ()), segments, encode=bag_of_words)
    _poison_cache(dataset, "segments")
    config = il_cli.ILConfig(dataset=dataset, out=tmp_path / "run", features=segments, train=SMALL_TRAIN)
    with pytest.raises(FeatureCacheError) as info:
        il_cli.train_il(config)
    message = str(info.value)
    assert message.startswith(f"{cache_path(dataset / 'features', ENCODER, 'segments')}: segment embeddings")
    assert str(cache_path(dataset / "features", ENCODER)) + ":" not in message and "\n" not in message
    assert cache_path(dataset / "features", ENCODER).exists()  # the good joint cache is left alone


def test_nan_in_the_dataset_cache_stops_rl_naming_the_source_of_the_runs_copy(clean_dataset, tmp_path):
    """rl_iter works on its own copy of the dataset's cache: deleting only the copy would copy the damage again."""
    from hera_jax.rl.run import open_run
    from tests.test_rl_loop import KeyRoomEnv, _config

    dataset = _copy(clean_dataset, tmp_path / "ds")
    key = _poison_cache(dataset)
    out = tmp_path / "rl"
    with pytest.raises(FeatureCacheError) as info:
        open_run(_config(out, 1), out, KeyRoomEnv(), GoldPathOracle(), _device(), dataset, dataset / "features",
                 encode=bag_of_words)
    message = str(info.value)
    assert repr(key) in message and "\n" not in message
    assert message.startswith(str(cache_path(out / "features", ENCODER)))  # the copy, and then its source
    assert f"{cache_path(dataset / 'features', ENCODER)} (--features-dir)" in message


def test_nan_in_a_features_cache_stops_routing_naming_the_cache(clean_dataset, tmp_path):
    """evaluate.py and rl_iter.py route through StateEmbedder: a NaN row must stop them, not route on NaN."""
    from hera_jax.router.scorer import StateEmbedder

    dataset = _copy(clean_dataset, tmp_path / "ds")
    key = _poison_cache(dataset)
    rows, _ = read_steps(dataset / "steps.jsonl")
    text, step = next((r["state_text"], r["step"]) for r in rows if r["state_key"] == key)
    embedder = StateEmbedder(SPEC, tmp_path / "own", read_dirs=[dataset / "features"], encode=bag_of_words)
    with pytest.raises(FeatureCacheError, match=rf"1 state\(s\) hold NaN/inf \(first: '{key}'\); the cache file\(s\) "
                                                rf"with such rows: {cache_path(dataset / 'features', ENCODER)}; delete"):
        embedder.features([rows[0]["state_text"], text], np.array([0, step]), SPEC)


@pytest.mark.parametrize("horizon", [0.0, -5.0, float("nan"), float("inf")])
def test_non_positive_horizon_is_refused(horizon):
    with pytest.raises(FeatureSpecError, match="horizon must be a positive number of steps"):
        FeatureSpec(horizon=horizon)


def test_il_cli_horizon_0_exits_2_with_one_line(tmp_path, script_in_process):
    code, _, err = script_in_process("il.py", "--features.horizon", "0", "--out", str(tmp_path / "run"))
    assert (code, err) == (2, "error: horizon must be a positive number of steps, got 0.0\n")
    assert not (tmp_path / "run").exists()


def test_training_on_nan_features_is_refused_naming_the_epoch(clean_dataset, tmp_path):
    table = load_il_table(clean_dataset, ())
    features, _ = build_features(table, SPEC, encode=bag_of_words)
    features = np.array(features)  # a host copy to damage
    features[table.mask("train"), 0] = np.nan  # past the feature check (e.g. made in memory): every epoch sees it
    with pytest.raises(NonFiniteError, match=r"training on .*: train loss is nan at epoch 0 \(of \d+ run\)"):
        train_and_evaluate(table, features, SMALL_TRAIN, clean_dataset)
    # the check the IL trainer runs is a pure post-hoc check of the jitted result; finite training passes it
    data = il_train_data(table, np.nan_to_num(features))
    check_finite_result(jax.jit(make_train(SMALL_TRAIN, int(data.x_train.shape[0])))(jax.random.key(0), data), "ok")


def _params(value: float | None = None):
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, SPEC.input_dim)))["params"]
    if value is not None:
        params = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(value), params)
    return params


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_checkpoint_with_non_finite_params_is_never_saved_nor_loaded(tmp_path, monkeypatch, value):
    config = TrainConfig(hidden_sizes=(4,))
    with pytest.raises(CheckpointError, match="refusing to save a router whose parameters .* hold NaN/inf"):
        save_router(tmp_path / "ckpt", 0, _params(value), config, SPEC)
    assert latest_step(tmp_path / "ckpt") is None
    # a checkpoint written without the check (an older version) is refused when loaded
    monkeypatch.setattr(checkpoint_module, "nonfinite_leaves", lambda params: [])
    save_router(tmp_path / "ckpt", 1, _params(value), config, SPEC)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"ckpt/1: parameters .*kernel.* hold NaN/inf; .* retrain"):
        load_router(tmp_path / "ckpt")
    save_router(tmp_path / "ok", 0, _params(), config, SPEC)
    assert load_router(tmp_path / "ok").feature_spec == SPEC


def test_an_empty_step_folder_does_not_hide_the_good_checkpoint(tmp_path, caplog):
    save_router(tmp_path / "ckpt", 3, _params(), TrainConfig(hidden_sizes=(4,)), SPEC)
    (tmp_path / "ckpt" / "99").mkdir()  # e.g. a copy that stopped half-way
    with caplog.at_level("WARNING"):
        assert latest_step(tmp_path / "ckpt") == 3
        assert load_router(tmp_path / "ckpt").feature_spec == SPEC
    assert not [r for r in caplog.records if "99" in r.getMessage()]  # orbax's warnings about it are not shown


def test_checkpoint_meta_without_a_feature_spec_is_one_error_naming_it(tmp_path):
    save_router(tmp_path / "ckpt", 0, _params(), TrainConfig(hidden_sizes=(4,)), SPEC)
    meta_file = tmp_path / "ckpt" / "0" / "meta" / "metadata"  # orbax's JsonSave file
    meta = json.loads(meta_file.read_text())
    del meta["feature_spec"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"ckpt/0/meta: missing or malformed field \(KeyError: 'feature_spec'\)"):
        load_router(tmp_path / "ckpt")


@pytest.mark.parametrize("field, value", [("embedding_dim", "abc"), ("scalar_features", ["bogus"]),
                                          ("text_design", "nope")])
def test_checkpoint_meta_with_a_wrong_feature_spec_value_is_one_error_naming_it(tmp_path, field, value):
    save_router(tmp_path / "ckpt", 0, _params(), TrainConfig(hidden_sizes=(4,)), SPEC)
    meta_file = tmp_path / "ckpt" / "0" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["feature_spec"][field] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"ckpt/0/meta: missing or malformed field"):
        load_router(tmp_path / "ckpt")


def test_py4j_logs_about_a_gone_jvm_are_dropped_others_kept():
    import logging

    from py4j import java_gateway
    from py4j.protocol import Py4JNetworkError

    from hera_jax.envs.jvm import quiet_lost_gateways

    quiet_lost_gateways()
    root = logging.getLogger()
    try:
        raise Py4JNetworkError("Answer from Java side is empty")
    except Py4JNetworkError:
        import sys as sys_

        lost = root.makeRecord("root", logging.ERROR, java_gateway.__file__, 1, "Exception while sending command.",
                               None, sys_.exc_info())
    refused = logging.getLogger("py4j.java_gateway").makeRecord(
        "py4j.java_gateway", logging.ERROR, java_gateway.__file__, 1,
        "An error occurred while trying to connect to the Java server (127.0.0.1:25333)", None, None)
    ours = root.makeRecord("root", logging.ERROR, __file__, 1, "Exception while sending command.", None, None)
    assert not root.filter(lost) and not logging.getLogger("py4j.java_gateway").filter(refused)
    assert root.filter(ours)


# ---- manifests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest,field", [
    ({}, "env"),
    ({"env": {}, "agents": {}, "settings": {}}, "env.name"),
    ({"env": {"name": "keyroom"}, "settings": {}}, "agents"),
    ({"env": {"name": "keyroom"}, "agents": {}, "settings": []}, "settings"),
])
def test_manifest_missing_required_fields_is_refused_naming_file_and_field(clean_dataset, tmp_path, manifest, field):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    write_json_atomic(dataset / "manifest.json", manifest)
    with pytest.raises(DatasetError) as info:
        load_il_table(dataset)  # with a {} manifest the unseen-task split used to vanish silently
    assert str(info.value).startswith(f"{dataset / 'manifest.json'}: field {field} is ")
    assert "\n" not in str(info.value)


def test_collect_refuses_to_append_to_steps_whose_manifest_is_missing(clean_dataset, tmp_path):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    (dataset / "manifest.json").unlink()
    before = (dataset / "steps.jsonl").read_bytes()
    with pytest.raises(DatasetError, match=r"steps.jsonl: has episodes but .*manifest.json is missing.*new --out"):
        _collect(dataset, seed=1, per_split={"train": 3})  # another device seed's episode ids
    assert (dataset / "steps.jsonl").read_bytes() == before and not (dataset / "manifest.json").exists()


# ---- one line instead of a traceback, at the CLI ------------------------------------------------------------------


@pytest.mark.parametrize("script, args, expected", [
    ("il.py", ["--features.scalar-features", "bogus"], "error: unknown scalar feature(s) ['bogus']; available:"),
    ("collect.py", ["--env", "scienceworl"], "error: unknown environment 'scienceworl'; did you mean 'scienceworld'?"),
    ("il.py", ["--env", "alfwrld"], "error: unknown environment 'alfwrld'; did you mean 'alfworld'?"),
    ("rl_iter.py", ["--env", "textworld_express:cookinworld"],
     "error: no shipped dataset for env 'textworld_express:cookinworld'; did you mean --env 'textworld_express:cookingworld'?"),
])
def test_a_mistyped_flag_value_is_one_line_before_any_work(tmp_path, script_in_process, script, args, expected):
    code, _, err = script_in_process(script, *args, "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_an_os_error_is_one_line_naming_the_path(tmp_path, clean_dataset, script_in_process):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    (dataset / "steps.jsonl").unlink()
    (dataset / "steps.jsonl").mkdir()  # a folder where the records should be
    code, _, err = script_in_process("il.py", "--dataset", str(dataset), "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and str(dataset / "steps.jsonl") in err


def test_rl_refuses_a_features_folder_that_is_a_file_before_embedding_anything(tmp_path, clean_dataset):
    """A file where the dataset's features folder should be would have every IL state embedded anew (minutes)."""
    from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
    from hera_jax.errors import HeraError
    from hera_jax.rl import open_run
    from tests.test_rl_loop import _config

    import dataclasses
    import re

    (tmp_path / "afile").write_text("")
    default = _config(tmp_path / "run", 1)
    passed = dataclasses.replace(default, features_dir=tmp_path / "afile")
    for config, named in ((passed, "--features-dir"),
                          (default, "the dataset's features folder (the default of --features-dir)")):
        with pytest.raises(HeraError, match=re.escape(f"{named} {tmp_path / 'afile'}: is a file, not a folder")):
            open_run(config, config.out, KeyRoomEnv(), GoldPathOracle(), PerturbedGoldDevice(seed=0), clean_dataset,
                     tmp_path / "afile", encode=bag_of_words)
        assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_features_cache_that_is_a_file_before_running_anything(tmp_path):
    from hera_jax.errors import HeraError
    from hera_jax.evaluate.evaluate_app import EvalConfig, evaluate

    (tmp_path / "afile").write_text("")
    with pytest.raises(HeraError, match=f"--features-cache {tmp_path / 'afile'}: is a file, not a folder"):
        evaluate(EvalConfig(env="textworld_express:twc", features_cache=tmp_path / "afile", out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _interrupted(tmp_path: Path, program: str, after: str = "started", delay_s: float = 0.2,
                 sent: str = "SIGINT") -> tuple[int, str]:
    """Run `program`, send SIGINT (or `sent`) `delay_s` after it prints `after`; (exit status, stderr)."""
    import signal
    import time

    # SIGINT as a terminal's Ctrl-C raises it (a runner started in the background may have it ignored)
    proc = subprocess.Popen([sys.executable, "-c", "import signal\n"
                             "signal.signal(signal.SIGINT, signal.default_int_handler)\n" + program],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert proc.stdout.readline().strip() == after
    time.sleep(delay_s)
    proc.send_signal(getattr(signal, sent))
    try:
        _, stderr = proc.communicate(timeout=30)  # the programs sleep 60 s where a Ctrl-C is lost
    finally:
        proc.kill()
    return proc.returncode, stderr


LIGHT_CONFIG = ("import dataclasses, typing\n"
                "@dataclasses.dataclass(frozen=True)\n"
                "class Config:\n"
                "    KEPT_ON_INTERRUPT: typing.ClassVar[str] = 'finished episodes are kept'\n"
                "    out: str | None = None\n")


def test_ctrl_c_is_one_line_saying_what_is_kept_and_how_to_go_on(tmp_path):
    """SIGINT while a command is running: no traceback, exit 130, what is kept and how to resume."""
    (tmp_path / "OUT").mkdir()  # the run folder the command made
    status, stderr = _interrupted(tmp_path, LIGHT_CONFIG + "import time\nfrom hera_jax.cli import run_cli\n"
                                  "run_cli(lambda c: (print('started', flush=True), time.sleep(60)), Config, "
                                  "args=['--out', 'OUT'])")
    assert (status, stderr) == (130, "interrupted: finished episodes are kept; to resume, rerun the same command "
                                     "with --out OUT\n")


def test_sigterm_stops_a_run_like_a_ctrl_c_with_the_status_a_shell_reports(tmp_path):
    """`kill` or a batch scheduler's time limit: the same one line as a Ctrl-C (what is kept, how to resume), exit
    143; the command's own cleanup (the engine's simulators) runs as for a Ctrl-C."""
    (tmp_path / "OUT").mkdir()
    status, stderr = _interrupted(tmp_path, LIGHT_CONFIG + "import time\nfrom hera_jax.cli import run_cli\n"
                                  "def main(config):\n"
                                  "    print('started', flush=True)\n"
                                  "    try:\n"
                                  "        time.sleep(60)\n"
                                  "    except KeyboardInterrupt:\n"
                                  "        open('cleaned-up', 'w').close()\n"
                                  "        raise\n"
                                  "run_cli(main, Config, args=['--out', 'OUT'])", sent="SIGTERM")
    assert (status, stderr) == (143, "interrupted: finished episodes are kept; to resume, rerun the same command "
                                     "with --out OUT\n")
    assert (tmp_path / "cleaned-up").exists()


def test_each_command_says_what_a_ctrl_c_keeps(tmp_path, monkeypatch):
    from hera_jax.cli import interrupted_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "OUT").mkdir()
    from hera_jax.evaluate.evaluate_app import EvalConfig
    from hera_jax.rl.config import RLConfig
    from hera_jax.rollout.collect_app import CollectConfig
    from hera_jax.router.il_app import ILConfig

    assert interrupted_line(ILConfig()) == "interrupted: nothing of this run is kept; rerun the command to start it again"
    assert interrupted_line(RLConfig(out=Path("OUT"))) == ("interrupted: finished iterations and episodes are kept; "
                                                          "to resume, rerun the same command with --out OUT")
    for config in (EvalConfig(), CollectConfig()):
        assert interrupted_line(config) == ("interrupted: finished episodes are kept; to resume, rerun the same "
                                            "command with --out set to the run folder it printed when it started")
    assert interrupted_line(None) == "interrupted before the run started"
    # no folder yet (stopped before the run made it): nothing is kept, whatever the command keeps otherwise
    assert interrupted_line(RLConfig(out=Path("not made yet"))) == ("interrupted before the run wrote anything; "
                                                                    "rerun the command to start it")
    # a path with spaces is quoted so that the line can be pasted into a shell
    (tmp_path / "runs ü" / "rl 1").mkdir(parents=True)
    assert interrupted_line(RLConfig(out=Path("runs ü/rl 1"))).endswith("with --out 'runs ü/rl 1'")


def test_ctrl_c_while_the_command_imports_its_modules_is_one_line(tmp_path):
    """A Ctrl-C in the seconds a script imports JAX: one line, no traceback of the import machinery."""
    (tmp_path / "slow_to_import.py").write_text("import time\nprint('importing', flush=True)\ntime.sleep(60)\n")
    status, stderr = _interrupted(tmp_path, "from hera_jax.cli import run_cli\n"
                                  "run_cli('slow_to_import:main', 'slow_to_import:Config', args=[])", after="importing")
    assert (status, stderr) == (130, "interrupted before the run started\n")


def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops_the_run(tmp_path):
    """Python swallows an exception raised in a finalizer or a garbage-collector callback (JAX has one): a Ctrl-C
    landing there would be printed as "Exception ignored" and the run would go on. It stops the run."""
    status, stderr = _interrupted(tmp_path, LIGHT_CONFIG + "import time\nfrom hera_jax.cli import run_cli\n"
                                  "class Slow:\n"
                                  "    def __del__(self):\n"
                                  "        print('finalizing', flush=True)\n"
                                  "        time.sleep(3)\n"
                                  "def main(config):\n"
                                  "    Slow()\n"
                                  "    time.sleep(60)\n"
                                  "run_cli(main, Config, args=[])", after="finalizing")
    assert status == 130 and "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.startswith("interrupted: finished episodes are kept") and stderr.count("\n") == 1


def test_a_library_failing_in_its_cleanup_while_a_ctrl_c_unwinds_is_still_one_interrupted_line(tmp_path):
    """py4j, interrupted while it connects to a simulator's JVM (which the same Ctrl-C stopped), logs the interrupt
    with its traceback on the root logger, then fails in its own cleanup (AttributeError): that is the Ctrl-C, one
    line and exit 130. A library error with no interrupt behind it still propagates as itself."""
    library = ("import logging, time\n"
               "def connect(config):\n"
               "    try:\n"
               "        print('connecting', flush=True)\n"
               "        time.sleep(60)\n"
               "    except KeyboardInterrupt:\n"
               "        logging.exception('KeyboardInterrupt while sending command.')\n"
               "        None.shutdown_socket()\n")
    (tmp_path / "OUT").mkdir()
    status, stderr = _interrupted(tmp_path, LIGHT_CONFIG + library + "from hera_jax.cli import run_cli\n"
                                  "run_cli(connect, Config, args=['--out', 'OUT'])", after="connecting")
    assert (status, stderr) == (130, "interrupted: finished episodes are kept; to resume, rerun the same command "
                                     "with --out OUT\n")
    from hera_jax.cli import raised_by_an_interrupt

    try:
        None.shutdown_socket()
    except AttributeError as e:
        assert not raised_by_an_interrupt(e)


def test_a_ctrl_c_during_the_sweeps_compile_or_training_stops_it_at_once(tmp_path):
    """A compile or a compiled program returns to Python only when done (minutes on a CPU): the sweep waits on it
    from a thread, so a Ctrl-C ends the command at once, in one line, with no teardown crash under the running work.
    (The work here is a thread that would sleep 60 s; the helper gives the program 30 s to end.)"""
    import time

    (tmp_path / "OUT").mkdir()
    started = time.monotonic()
    status, stderr = _interrupted(tmp_path, LIGHT_CONFIG + "import time\nfrom rich.console import Console\n"
                                  "from hera_jax.cli import run_cli\nfrom hera_jax.sweep_app import waiting_on\n"
                                  "def main(config):\n"
                                  "    print('started', flush=True)\n"
                                  "    waiting_on(Console(stderr=True))(lambda: time.sleep(60), 'training')\n"
                                  "run_cli(main, Config, args=['--out', 'OUT'])")
    assert (status, stderr) == (130, "interrupted: finished episodes are kept; to resume, rerun the same command "
                                     "with --out OUT\n")
    assert time.monotonic() - started < 20


def test_the_sweeps_wait_returns_the_work_raises_its_error_and_says_how_long_in_a_log(tmp_path):
    import io
    import time

    from rich.console import Console

    from hera_jax.sweep_app import waiting_on

    log = io.StringIO()
    wait = waiting_on(Console(file=log, width=80), plain_every_s=0.1)
    assert wait(lambda: (time.sleep(0.45), 7)[1], "training") == 7
    assert 2 <= log.getvalue().count("training: ") <= 5 and log.getvalue().endswith("s so far\n")
    with pytest.raises(ValueError, match="widths"):
        wait(lambda: (_ for _ in ()).throw(ValueError("widths of different depth")), "compiling")


def test_a_mistyped_env_is_refused_before_the_command_imports_its_modules(tmp_path):
    (tmp_path / "never_imported.py").write_text("raise SystemExit('imported')\n")
    proc = subprocess.run([sys.executable, "-c", "from hera_jax.cli import run_cli\n"
                           "run_cli('never_imported:main', 'never_imported:Config', args=['--env', 'scienceworldd'])"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("error: unknown environment 'scienceworldd'; did you mean 'scienceworld'? available: "
                           "alfworld, appworld, scienceworld, textworld_express, webshop\n")
    from hera_jax.cli import env_name_problem

    assert env_name_problem(["--env", "--help"]) is None  # no value: the parser reports it, with the help
    assert env_name_problem(["--out", "x", "--env"]) is None
    assert env_name_problem(["--env=alfworld", "--env", "textworld_express:twc"]) is None


def test_collect_without_out_writes_a_new_run_folder_never_the_shipped_dataset(tmp_path, monkeypatch, capsys):
    from hera_jax.envs.profiles import SHIPPED_DATASETS
    from hera_jax.rollout import collect_app

    written = []
    monkeypatch.setattr(collect_app, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(collect_app, "collect_into", lambda config: written.append(config.out))
    collect_app.collect_dataset(collect_app.CollectConfig(env="textworld_express:twc"))
    assert written[0].parent == tmp_path / "runs" / "collect"
    assert written[0] != SHIPPED_DATASETS["textworld_express:twc"]
    assert f"--out {written[0]}" in capsys.readouterr().out  # how to resume it


@pytest.mark.parametrize("damage", ["none", "permuted", "scaled"])
def test_a_cache_without_checksum_is_compared_with_the_encoder_once(clean_dataset, tmp_path, damage):
    """Caches from older versions or other tools carry no checksum: the rows asked of them are re-embedded and
    compared."""
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    embeddings = {"none": cache.embeddings, "permuted": cache.embeddings[::-1],
                  "scaled": cache.embeddings * 1000}[damage]
    np.savez(path, keys=np.asarray(cache.keys), embeddings=embeddings.astype(np.float16),
             meta=np.asarray(json.dumps({"model": ENCODER, "dim": DIM, "count": len(cache.keys)})))
    table = load_il_table(dataset, ())
    if damage == "none":
        features, num_new = build_features(table, SPEC, encode=bag_of_words)
        assert num_new == 0 and np.isfinite(features).all()
        return
    with pytest.raises(FeatureCacheError, match=r"carries no checksum, and \d+ of \d+ rows compared differ"):
        build_features(table, SPEC, encode=bag_of_words)


def test_a_scaled_row_no_sample_compares_is_found_by_its_norm(clean_dataset, tmp_path):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    keys = [*cache.keys, "a state no run asks for"]
    embeddings = np.concatenate([cache.embeddings, 100 * bag_of_words(["a state no run asks for"])])
    np.savez(path, keys=np.asarray(keys), embeddings=embeddings.astype(np.float16),
             meta=np.asarray(json.dumps({"model": ENCODER, "dim": DIM, "count": len(keys)})))
    with pytest.raises(FeatureCacheError, match=r"1 of its \d+ rows are not unit-norm .*'a state no run asks for'"):
        build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)


def test_a_scaled_row_under_a_rewritten_checksum_is_found_by_its_norm(clean_dataset, tmp_path):
    """A checksum shows damage, not an edit whose writer recomputed it: one row scaled in a cache with a valid
    checksum is refused when the cache loads, because all its other rows are unit-norm."""
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    assert cache.checked and len(cache.keys) >= 20
    embeddings = cache.embeddings.copy()
    embeddings[7] *= 60000 / np.linalg.norm(embeddings[7])
    stored = embeddings.astype(np.float16)
    np.savez(path, keys=np.asarray(cache.keys), embeddings=stored, meta=np.asarray(json.dumps(
        {"model": ENCODER, "dim": DIM, "count": len(cache.keys), "sha256": content_digest(cache.keys, stored)})))
    with pytest.raises(FeatureCacheError, match=rf"1 of its {len(cache.keys)} rows are not unit-norm as all the "
                                                rf"others are .*{re.escape(repr(cache.keys[7]))}: norm 6e\+04"):
        FeatureCache(path, ENCODER, DIM)


def test_every_row_scaled_under_a_rewritten_checksum_is_refused_for_a_normalising_encoder(clean_dataset, tmp_path):
    """All rows scaled alike (no unit-norm majority to stand out from) with a recomputed checksum: a cache of a
    normalising encoder (sentence-transformers with normalize_embeddings) is refused; the same file passes for an
    encoder that declares nothing, whose rows may have any norm."""
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    stored = (cache.embeddings * 30).astype(np.float16)
    np.savez(path, keys=np.asarray(cache.keys), embeddings=stored, meta=np.asarray(json.dumps(
        {"model": ENCODER, "dim": DIM, "count": len(cache.keys), "sha256": content_digest(cache.keys, stored)})))

    def normalising(texts):
        return bag_of_words(texts)

    normalising.unit_norm_rows = True
    table = load_il_table(dataset, ())
    with pytest.raises(FeatureCacheError, match=rf"{len(cache.keys)} of its {len(cache.keys)} rows are not unit-norm "
                                                rf"\(e.g. .*: norm 30\), but encoder '{ENCODER}' gives unit-norm rows"):
        build_features(table, SPEC, encode=normalising)
    features, num_new = build_features(table, SPEC, encode=bag_of_words)
    assert num_new == 0 and np.abs(features).max() > 5  # undeclared encoder: loaded as stored
    assert sentence_encode_fn().unit_norm_rows  # the real encoder declares it


def test_two_swapped_rows_of_a_cache_without_checksum_are_found(clean_dataset, tmp_path):
    """Every row asked of an unchecked cache is compared, not a sample: two rows swapped (which a sample of every
    n-th row need not draw) are refused."""
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    embeddings = cache.embeddings.copy()
    other = next(j for j in range(2, len(embeddings)) if not np.allclose(embeddings[j], embeddings[1], atol=0.05))
    embeddings[[1, other]] = embeddings[[other, 1]]
    np.savez(path, keys=np.asarray(cache.keys), embeddings=embeddings.astype(np.float16),
             meta=np.asarray(json.dumps({"model": ENCODER, "dim": DIM, "count": len(cache.keys)})))
    with pytest.raises(FeatureCacheError, match=r"carries no checksum, and 2 of \d+ rows compared differ"):
        build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)


def test_an_unchecked_cache_gets_a_checksum_only_once_every_row_was_compared(clean_dataset, tmp_path):
    """A run that compared every row of an unchecked cache (and added new ones) writes it with a checksum, so later
    runs compare nothing; a row no run asked for keeps the cache without one."""
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)

    def legacy(keys, embeddings):
        np.savez(path, keys=np.asarray(keys), embeddings=embeddings.astype(np.float16),
                 meta=np.asarray(json.dumps({"model": ENCODER, "dim": DIM, "count": len(keys)})))

    def checksummed() -> bool:
        with np.load(path) as data:
            return "sha256" in json.loads(str(data["meta"]))

    extra = "a state no run asks for"
    legacy([*cache.keys[:-3], extra], np.concatenate([cache.embeddings[:-3], bag_of_words([extra])]))
    _, num_new = build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)
    assert num_new == 3 and not checksummed()  # the extra row was never compared
    legacy(cache.keys[:-3], cache.embeddings[:-3])
    _, num_new = build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)
    assert num_new == 3 and checksummed() and FeatureCache(path, ENCODER, DIM).checked


def test_a_finalizer_finding_its_pipe_closed_prints_nothing_other_finalizer_errors_still_do():
    code = ("from hera_jax.cli import run_cli\n"
            "from hera_jax.router.il_app import ILConfig\n"
            "class Gateway:\n"
            "    def __init__(self, error): self.error = error\n"
            "    def __del__(self): raise self.error\n"
            "def main(config):\n"
            "    Gateway(BrokenPipeError(32, 'Broken pipe'))\n"
            "    Gateway(ValueError('a real bug'))\n"
            "run_cli(main, ILConfig, args=[])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert "ValueError: a real bug" in proc.stderr


def test_adding_rows_to_an_unchecked_cache_does_not_vouch_for_its_old_rows(clean_dataset, tmp_path):
    dataset = _copy(clean_dataset, tmp_path / "ds")
    path = cache_path(dataset / "features", ENCODER)
    cache = FeatureCache(path, ENCODER, DIM)
    np.savez(path, keys=np.asarray(cache.keys), embeddings=cache.embeddings[::-1].astype(np.float16),  # permuted
             meta=np.asarray(json.dumps({"model": ENCODER, "dim": DIM, "count": len(cache.keys)})))
    legacy = FeatureCache(path, ENCODER, DIM)
    legacy.add(["a new state"], bag_of_words(["a new state"]))  # asks nothing of the old rows, so checks none
    with np.load(path) as data:
        assert "sha256" not in json.loads(str(data["meta"]))  # still unchecked: the next run compares them
    with pytest.raises(FeatureCacheError, match="carries no checksum"):
        build_features(load_il_table(dataset, ()), SPEC, encode=bag_of_words)


@pytest.mark.slow  # a whole interpreter and the CLI's imports
def test_help_into_a_closed_pipe_ends_quietly():
    """`rl_iter.py --help | head -2`: the reader closes the pipe early; no "error: Broken pipe", no traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "rl_iter.py"), "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    _, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, stderr) == (141, b"")


def test_the_jax_backend_starts_on_a_thread_once_the_flags_are_checked(tmp_path):
    """il.py and sweep.py start JAX's backend on a thread while their modules import: a mistyped flag still fails
    before JAX is imported, and a good one runs the command on the started backend."""
    program = (LIGHT_CONFIG + "import atexit, sys, threading\nfrom hera_jax.cli import run_cli\n"
               "atexit.register(lambda: print('jax imported:', 'jax' in sys.modules, flush=True))\n"
               "def main(config):\n"
               "    import jax\n"
               "    started = [t for t in threading.enumerate() if t.name == 'jax-backend']\n"
               "    for t in started:\n"
               "        t.join(60)\n"
               "    print('ran on', jax.devices()[0].platform, 'thread seen:', bool(started), flush=True)\n"
               "run_cli(main, Config, args=sys.argv[1:], start_jax_backend=True)\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    bad = subprocess.run([sys.executable, "-c", program, "--ot", "x"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "--ot" in bad.stderr and "jax imported: False" in bad.stdout, (bad.stdout, bad.stderr)
    good = subprocess.run([sys.executable, "-c", program, "--out", "x"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert good.returncode == 0, good.stderr
    assert "ran on cpu" in good.stdout and "jax imported: True" in good.stdout
