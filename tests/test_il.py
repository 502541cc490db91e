"""IL stage end to end on the shipped dataset, and the bad inputs a user can hit."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.dataset import check_trainable, load_il_table
from hera_jax.envs.profiles import profile
from hera_jax.errors import HeraError
from hera_jax.features import FeatureSpec, featurize
from hera_jax.rollout.records import DatasetError
from hera_jax.router.checkpoint import CheckpointError, load_router, save_router
from hera_jax.router.il import train_and_evaluate
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import TrainConfig
from tests.conftest import ROOT, SHIPPED_DATASET, make_steps, write_toy_dataset

from hera_jax.router import il_app as il_cli


def _no_encoder(texts):
    raise AssertionError(f"the shipped features cache should cover every state, asked to embed {len(texts)}")


@pytest.fixture(scope="module")
def shipped():
    table = load_il_table(SHIPPED_DATASET, profile("scienceworld").unseen_tasks)
    features, num_new = featurize(table.state_key, table.state_text, table.step, FeatureSpec(),
                                  SHIPPED_DATASET / "features", encode=_no_encoder)
    return table, features, num_new


def test_shipped_dataset_is_big_enough_and_split_by_variation(shipped):
    table, _, num_new = shipped
    assert num_new == 0
    assert len(set(table.task.tolist())) >= 10
    assert len(set(table.episode_id.tolist())) >= 200
    # the one note: ScienceWorld has look-alike variations in different splits (lifespan-longest-lived 2 and 63)
    assert table.report.problems == [] and all("look-alike" in n for n in table.report.notes)
    seen = {}
    for task, variation, split in zip(table.task, table.variation, table.split):
        assert seen.setdefault((task, variation), split) == split, "a variation appears in two splits"
    unseen = set(profile("scienceworld").unseen_tasks)
    assert set(table.task[table.mask("test_unseen")].tolist()) == unseen
    assert not (set(table.task[table.mask("train")].tolist()) & unseen)
    rate = table.label[table.mask("train")].mean()
    assert 0.2 < rate < 0.8, f"IL labels are too imbalanced to learn from: {rate:.2f}"


def test_il_router_beats_majority_baseline_on_dev_auroc(shipped):
    table, features, _ = shipped
    _, result, metrics, _ = train_and_evaluate(table, features, TrainConfig(seed=0), SHIPPED_DATASET)
    # A majority-class predictor has AUROC 0.5 on every split.
    assert metrics["dev"]["auroc"] > 0.65, metrics["dev"]
    assert metrics["test"]["auroc"] > 0.6, metrics["test"]
    assert metrics["dev"]["accuracy"] > metrics["dev"]["majority_accuracy"]
    assert 0.0 < metrics["test"]["cloud_step_ratio"] < 1.0


def test_checkpoint_round_trip_and_incompatible_features(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=6, scalar_features=("step_frac",))
    config = TrainConfig(hidden_sizes=(5, 3))
    params = RouterMLP(config.hidden_sizes).init(jax.random.key(1), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 7, params, config, spec, {"note": "x"})
    bundle = load_router(tmp_path / "ckpt", expected_spec=spec)
    assert bundle.train_config == config and bundle.feature_spec == spec and bundle.meta["note"] == "x"
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, bundle.params)
    x = jnp.ones((2, spec.input_dim))
    np.testing.assert_allclose(
        bundle.p_cloud(x), jax.nn.sigmoid(RouterMLP(config.hidden_sizes).apply({"params": params}, x)), rtol=1e-6
    )
    other = FeatureSpec(encoder="toy", embedding_dim=8, scalar_features=("step_frac",))
    with pytest.raises(CheckpointError, match="embedding_dim: checkpoint 6, now 8"):
        load_router(tmp_path / "ckpt", expected_spec=other)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_router(tmp_path / "missing")


def test_a_router_saved_on_another_platform_loads_here(tmp_path):
    """A checkpoint written on a GPU machine names "cuda:0" as each array's device; a CPU server (here) must still
    load it, onto its own device, with the same values (and the reverse, by the same code path)."""
    spec = FeatureSpec(encoder="toy", embedding_dim=6)
    params = RouterMLP((4,)).init(jax.random.key(2), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 0, params, TrainConfig(hidden_sizes=(4,)), spec)
    shardings = tmp_path / "ckpt" / "0" / "params" / "_sharding"
    saved_on = json.loads(shardings.read_text())
    assert all(json.loads(v)["device_str"] == "cpu:0" for v in saved_on.values())
    shardings.write_text(json.dumps({k: v.replace("cpu:0", "cuda:0") for k, v in saved_on.items()}))
    bundle = load_router(tmp_path / "ckpt")
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, bundle.params)
    assert {leaf.devices().pop() for leaf in jax.tree.leaves(bundle.params)} == {jax.devices()[0]}


def test_checkpoint_whose_params_do_not_match_its_config_is_refused(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=6)
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 0, params, TrainConfig(hidden_sizes=(9,)), spec)
    with pytest.raises(CheckpointError, match="parameters do not match the stored config"):
        load_router(tmp_path / "ckpt")


def test_cli_missing_dataset_is_one_clear_line(tmp_path, script_in_process):
    code, _, err = script_in_process("il.py", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.startswith("error:") and "dataset folder not found" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_empty_dataset(tmp_path):
    folder = write_toy_dataset(tmp_path / "ds", [])
    (folder / "steps.jsonl").write_text("")
    with pytest.raises(DatasetError, match="no complete episodes"):
        load_il_table(folder, ())


def test_one_class_dataset_is_refused_before_embedding(toy_dataset, tmp_path):
    folder = toy_dataset({"train": [[("a", "a"), ("b", "b")]], "dev": [[("a", "b")]]})
    table = load_il_table(folder, ())
    with pytest.raises(DatasetError, match="every train state has label 0"):
        check_trainable(table, folder)
    with pytest.raises(DatasetError, match="every train state has label 0"):
        il_cli.train_il(il_cli.ILConfig(dataset=folder, out=tmp_path / "run", features=FeatureSpec(encoder="not-used")))
    assert not (tmp_path / "run").exists()


def test_unknown_unseen_task(toy_dataset):
    folder = toy_dataset({"train": [[("a", "b")]]})
    with pytest.raises(DatasetError, match=r"unseen task\(s\) \['melt'\] are not in .*its tasks are: t1"):
        load_il_table(folder, ("melt",))


def test_dataset_without_device_replay_is_refused(tmp_path):
    steps = make_steps("e", "t", "train", [("a", "a")])
    steps[0].device_action = None
    folder = write_toy_dataset(tmp_path / "ds", [steps])
    with pytest.raises(DatasetError, match="lack device_action or cloud_action"):
        load_il_table(folder, ())


def test_existing_run_folder_is_never_overwritten(toy_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"keep": True}))
    folder = toy_dataset({"train": [[("a", "b")]]})
    with pytest.raises(HeraError, match="exists and is not empty"):
        il_cli.train_il(il_cli.ILConfig(dataset=folder, out=out))
    assert json.loads((out / "metrics.json").read_text()) == {"keep": True}


def test_il_main_writes_metrics_plot_and_loadable_checkpoint(tmp_path):
    from hera_jax.features import FeatureSpec

    config = il_cli.ILConfig(out=tmp_path / "run", train=TrainConfig(max_epochs=4, patience=4))
    summary = il_cli.train_il(config)
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["agents_are_stand_ins"] is True and metrics["newly_embedded_states"] == 0
    assert set(metrics["metrics"]) == {"train", "dev", "test", "test_unseen"}
    assert metrics["metrics"]["dev"]["auroc"] == pytest.approx(summary["metrics"]["dev"]["auroc"])
    assert (out / "training_curve.png").stat().st_size > 10_000
    bundle = load_router(out / "checkpoint", expected_spec=FeatureSpec())
    assert bundle.meta["il_summary"]["agents_are_stand_ins"] is True
    assert bundle.train_config.max_epochs == 4


@pytest.mark.slow  # a whole il.py process
def test_il_on_an_accelerator_imports_its_late_modules_on_a_thread_and_writes_its_run(tmp_path):
    """On an accelerator (here the default backend is reported as "gpu"), il.py starts the backend on one thread and
    imports the checkpointer and matplotlib on another while it trains; the run folder is as on the CPU."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import atexit, threading
        import jax
        jax.default_backend = lambda: "gpu"
        started, start = [], threading.Thread.start
        threading.Thread.start = lambda thread: (started.append(thread.name), start(thread))[1]
        atexit.register(lambda: print("threads:", started, flush=True))
        from hera_jax.cli import run_cli
        run_cli("hera_jax.router.il_app:train_il", "hera_jax.router.il_config:ILConfig", start_jax_backend=True,
                args=["--out", {str(out)!r}, "--train.max-epochs", "2", "--compile-cache", "None"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'jax-backend'" in proc.stdout and "'late-imports'" in proc.stdout, proc.stdout[-500:]
    assert (out / "training_curve.png").stat().st_size > 10_000
    assert load_router(out / "checkpoint", expected_spec=FeatureSpec()).train_config.max_epochs == 2


def test_an_env_that_contradicts_the_dataset_is_refused(tmp_path):
    config = il_cli.ILConfig(env="textworld_express:twc", dataset=SHIPPED_DATASET, out=tmp_path / "run")  # set, not default
    with pytest.raises(HeraError, match=r"env.name is 'scienceworld', not --env 'textworld_express:twc'"):
        il_cli.train_il(config)
    assert not (tmp_path / "run").exists()
