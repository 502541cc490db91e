"""The shared nested configs (`--agents.*`, `--features.*`, `--engine.*`) and the environment profiles, as the commands use them."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
import tyro

from hera_jax.agents import config as agents_config
from hera_jax.agents.config import AgentsConfig
from hera_jax.cli import RENAMED_FLAGS, run_cli
from hera_jax.envs.profiles import PROFILES, SHIPPED_DATASETS, EvalSizes, RLSizes, profile
from hera_jax.evaluate import evaluate_app
from hera_jax.features import FeatureSpec
from hera_jax.rl import rl_app
from hera_jax.rl.config import RLConfig
from hera_jax.rollout import collect_app
from hera_jax.rollout.engine import EngineConfig
from hera_jax.router import il_app
from hera_jax.router.checkpoint import save_router
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import TrainConfig
from hera_jax import sweep_app
from tests.conftest import ROOT

URL = "http://10.9.8.7:4321/v1"
LLM_FLAGS = ["--agents.cloud", "openai", "--agents.cloud-base-url", URL, "--agents.cloud-model", "qwen-max",
             "--agents.cloud-timeout-s", "7", "--agents.cloud-max-call-s", "11", "--agents.cloud-max-calls", "5"]


class _Built(Exception):
    """Stops a command right after it built its agents."""

    def __init__(self, agents):
        super().__init__("agents built")
        self.agents = agents


def _stop_after_building(monkeypatch, module):
    real = agents_config.build_agents

    def build_then_stop(*args, **kwargs):
        raise _Built(real(*args, **kwargs))

    monkeypatch.setattr(module, "build_agents", build_then_stop)


def _agents_built_by(main, config_type, args):
    with pytest.raises(_Built) as built:
        run_cli(main, config_type, args=args)
    return built.value.agents


def _check_cloud(cloud):
    assert cloud.name == "openai:qwen-max"
    c = cloud.config
    assert (c.base_url, c.model, c.timeout_s, c.max_call_s, c.max_calls) == (URL, "qwen-max", 7.0, 11.0, 5)


def test_cloud_base_url_reaches_the_client_when_collecting(monkeypatch, tmp_path):
    pytest.importorskip("textworld_express")
    _stop_after_building(monkeypatch, collect_app)
    cloud, device = _agents_built_by(collect_app.collect_dataset, collect_app.CollectConfig, [
        "--out", str(tmp_path / "ds"), "--env", "textworld_express:twc", "--agents.device-seed", "3", *LLM_FLAGS])
    _check_cloud(cloud)
    assert device.name.startswith("perturbed") and device.seed == 3


def test_cloud_base_url_reaches_the_client_in_rl(monkeypatch, tmp_path):
    _stop_after_building(monkeypatch, rl_app)
    cloud, device = _agents_built_by(rl_app.train_rl, RLConfig, ["--out", str(tmp_path / "rl"), *LLM_FLAGS])
    _check_cloud(cloud)
    assert device.seed == 0


def test_cloud_base_url_reaches_the_client_in_evaluation(monkeypatch, tmp_path):
    real = agents_config.agent_factories

    def build_then_stop(*args, **kwargs):  # evaluation hands the factories to its (Ray or in-process) workers
        raise _Built(tuple(make() for make in real(*args, **kwargs)))

    monkeypatch.setattr(evaluate_app, "agent_factories", build_then_stop)
    spec = FeatureSpec()
    params = RouterMLP((8,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "router", 0, params, TrainConfig(hidden_sizes=(8,)), spec, {"trained_on": []})
    cloud, device = _agents_built_by(evaluate_app.evaluate, evaluate_app.EvalConfig, [
        "--routers", f"r={tmp_path / 'router'}", "--out", str(tmp_path / "eval"), "--features-cache",
        str(tmp_path / "features"), "--no-progress", *LLM_FLAGS])
    _check_cloud(cloud)
    shipped = json.loads((SHIPPED_DATASETS["scienceworld"] / "manifest.json").read_text())
    assert device.seed == shipped["settings"]["device_seed"]  # the dataset's device, unless a seed is given


@pytest.mark.parametrize("main, config_type", [
    (collect_app.collect_dataset, collect_app.CollectConfig), (rl_app.train_rl, RLConfig),
    (evaluate_app.evaluate, evaluate_app.EvalConfig), (il_app.train_il, il_app.ILConfig),
    (sweep_app.sweep_experiment, sweep_app.SweepConfig),
])
@pytest.mark.parametrize("old", ["--cloud", "--cloud-base-url", "--device-seed", "--encoder", "--horizon",
                                 "--text-design"])
def test_old_flag_spellings_name_the_new_one(main, config_type, old, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, config_type, args=[f"{old}=x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {old} was renamed: use {RENAMED_FLAGS[old]}\n"


@pytest.mark.parametrize("main, config_type", [
    (collect_app.collect_dataset, collect_app.CollectConfig), (rl_app.train_rl, RLConfig),
    (evaluate_app.evaluate, evaluate_app.EvalConfig),
])
@pytest.mark.parametrize("old", ["--batch-size", "--workers", "--ray-address", "--fresh-env-per-episode"])
def test_engine_flags_live_under_engine_in_every_rollout_command(main, config_type, old, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, config_type, args=[old, "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {old} was renamed: use --engine.{old[2:]}\n"
    parsed = tyro.cli(config_type, args=["--engine.batch-size", "3", "--engine.workers", "2"])
    assert (parsed.engine.batch_size, parsed.engine.workers) == (3, 2)
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, config_type, args=["--engine.batch-size", "0"])
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: --engine.batch-size must be >= 1, got 0\n"


def test_a_config_field_named_like_a_renamed_flag_is_that_field():
    @dataclasses.dataclass(frozen=True)
    class Bench:
        batch_size: int = 1

    seen = []
    run_cli(seen.append, Bench, args=["--batch-size", "4"])
    assert seen == [Bench(batch_size=4)]


@pytest.mark.parametrize("args, message", [
    (["--agents.cloud-timeout-s", "0"], "error: --agents.cloud-timeout-s must be > 0, got 0.0"),
    (["--agents.cloud-max-calls", "0"], "error: --agents.cloud-max-calls must be >= 1, got 0"),
    (["--features.embedding-dim", "0"], "error: --features.embedding-dim must be >= 1, got 0"),
])
def test_nested_fields_keep_their_declared_ranges(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(rl_app.train_rl, RLConfig, args=["--out", str(tmp_path / "rl"), *args])
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "rl").exists()


def test_profiles_hold_the_defaults_the_experiments_had():
    sw = profile("scienceworld")
    assert len(sw.collect_tasks) == 14 and set(sw.unseen_tasks) <= set(sw.collect_tasks)
    assert set(sw.eval_tasks) <= set(sw.collect_tasks) - set(sw.unseen_tasks)
    assert collect_app.CollectConfig().tasks is None  # resolved from the profile when collecting
    assert (RLConfig().train_variations, RLConfig().eval_variations) == (50, 20)
    default = evaluate_app.EvalConfig()
    assert (default.dev_per_task, default.test_per_task, default.unseen_per_task) == (2, 100, 5)
    cooking = RLConfig(env="textworld_express:cookingworld")
    assert (cooking.train_variations, cooking.eval_variations) == (6, 9)
    twc = evaluate_app.EvalConfig(env="textworld_express:twc")
    assert (twc.dev_per_task, twc.test_per_task, twc.unseen_per_task) == (5, 134, 30)
    cw = evaluate_app.EvalConfig(env="textworld_express:cookingworld")
    assert (cw.dev_per_task, cw.test_per_task, cw.unseen_per_task) == (2, 2, 3)
    assert profile("webshop:http://host:3000") is PROFILES["webshop"] and PROFILES["webshop"].dataset is None
    # an env without a profile (e.g. ALFWorld with LLM agents, where an episode costs dollars) gets small sizes
    assert profile("unknown-env").rl_sizes == RLSizes(2, 3) and profile("unknown-env").eval_sizes == EvalSizes(1, 1, 2)


@pytest.mark.parametrize("config_type", [RLConfig, evaluate_app.EvalConfig])
def test_engine_batch_size_defaults_per_env_and_a_flag_wins(config_type):
    # ScienceWorld JVMs slow each other down on 2 cores; TextWorldExpress simulators are light (benchmarks/RESULTS.md)
    assert config_type().engine.batch_size == 2
    assert config_type(env="textworld_express:twc").engine.batch_size == 8
    assert config_type(env="unknown-env").engine.batch_size == 2
    parsed = tyro.cli(config_type, args=["--env", "textworld_express:twc", "--engine.batch-size", "3"])
    assert parsed.engine.batch_size == 3
    # the resolved number is what config.json records (and what a resumed run is compared with)
    assert tyro.cli(config_type, args=["--env", "textworld_express:twc"]).engine.batch_size == 8


def test_engine_batch_size_and_workers_are_filled_in_only_where_left_to_the_default():
    assert (collect_app.CollectConfig().engine.batch_size, collect_app.CollectConfig().engine.workers) == (1, 1)
    assert EngineConfig().with_defaults(4, 2) == EngineConfig(batch_size=4, workers=2)
    assert EngineConfig(batch_size=3, workers=1).with_defaults(4, 2) == EngineConfig(batch_size=3, workers=1)
    # ALFWorld's simulator is Python: its default is two Ray workers, in every command that runs episodes
    for config in (collect_app.CollectConfig(env="alfworld"), RLConfig(env="alfworld"),
                   evaluate_app.EvalConfig(env="alfworld")):
        assert (config.engine.batch_size, config.engine.workers) == (1, 2)
    assert RLConfig().engine.workers == 1


def test_env_options_come_from_flags_then_the_manifest_then_the_default():
    sw, twc = profile("scienceworld"), profile("textworld_express:twc")
    assert sw.env_options() == {"simplification": "easy"}
    assert sw.env_options({"env": {"name": "scienceworld", "simplification": "hard"}}) == {"simplification": "hard"}
    assert sw.env_options({"env": {"simplification": "hard"}}, simplification="easy") == {"simplification": "easy"}
    assert twc.env_options({"env": {"simplification": "easy"}}, simplification="easy") == {}  # not a TWX option


def test_no_environment_name_branches_outside_the_adapters():
    pattern = re.compile(r"""==\s*["'](scienceworld|textworld_express|alfworld|webshop|appworld)""")
    files = [p for folder in ("src/hera_jax", "experiments") for p in (ROOT / folder).rglob("*.py")
             if "envs" not in p.relative_to(ROOT).parts]
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text())]
    assert offenders == []


def test_collect_manifest_settings_stay_flat():
    """Datasets collected before the agent flags were nested must still resume: the manifest keeps them flat."""
    settings = collect_app.manifest_settings(collect_app.CollectConfig(out=Path("x")))
    assert "agents" not in settings and settings["cloud"] == "oracle" and settings["device_seed"] == 0
    shipped = json.loads((SHIPPED_DATASETS["scienceworld"] / "manifest.json").read_text())["settings"]
    assert set(shipped) <= set(settings)


def test_resume_allows_new_agent_budgets_but_not_another_agent(tmp_path):
    from hera_jax.runs import RunFolderError, check_resume, config_json

    started = RLConfig(out=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_json(started)))
    more_budget = AgentsConfig(cloud_max_calls=50, cloud_timeout_s=5.0)
    check_resume(tmp_path, RLConfig(out=tmp_path, iters=9, agents=more_budget))  # run-only: allowed
    with pytest.raises(RunFolderError, match=r"agents\.cloud: run has 'oracle', now 'openai'"):
        check_resume(tmp_path, RLConfig(out=tmp_path, agents=AgentsConfig(cloud="openai")))
    with pytest.raises(RunFolderError, match=r"features\.text_design"):
        check_resume(tmp_path, RLConfig(out=tmp_path, features=FeatureSpec(text_design="joint")))


def test_the_default_evaluation_says_how_to_add_the_newest_rl_run_of_its_env(tmp_path, monkeypatch):
    from hera_jax.evaluate import routers

    monkeypatch.setattr(routers, "RUNS_ROOT", tmp_path)
    assert routers.rl_run_hint("alfworld", Path("il/checkpoint")) is None  # no RL run yet
    for name, env in (("sw", "scienceworld"), ("alf", "alfworld")):
        (tmp_path / "rl" / name / "checkpoints" / "0").mkdir(parents=True)
        (tmp_path / "rl" / name / "config.json").write_text(json.dumps({"env": env}))
    hint = routers.rl_run_hint("alfworld", Path("il/checkpoint"))
    assert f"--routers il=il/checkpoint rl={tmp_path / 'rl' / 'alf' / 'checkpoints'}@all" in hint
    assert routers.rl_run_hint("textworld_express:twc", Path("il/checkpoint")) is None


def test_the_data_fields_are_declared_once_and_resolve_the_same_way(tmp_path):
    from hera_jax.dataset import DataConfig

    commands = (il_app.ILConfig, RLConfig, sweep_app.SweepConfig, evaluate_app.EvalConfig)
    for config_type in commands:
        assert issubclass(config_type, DataConfig), config_type
        own = set().union(*(vars(c).get("__annotations__", {}) for c in config_type.__mro__ if c is not DataConfig))
        assert not own & {f.name for f in dataclasses.fields(DataConfig)}, config_type  # not re-declared
        shipped = config_type(env="textworld_express:twc")
        assert shipped.dataset_dir() == SHIPPED_DATASETS["textworld_express:twc"]
        assert shipped.features_path() == SHIPPED_DATASETS["textworld_express:twc"] / "features"
        moved = config_type(dataset=tmp_path / "d", features_dir=tmp_path / "f")
        assert (moved.dataset_dir(), moved.features_path()) == (tmp_path / "d", tmp_path / "f")
        assert tyro.cli(config_type, args=["--env", "alfworld", "--features-dir", str(tmp_path)]).features_dir == tmp_path


def test_help_joins_a_docstrings_lines_so_sentences_are_not_broken(monkeypatch, script_in_process):
    from hera_jax.cli import _join_lines

    assert _join_lines("First line of it\n    and the rest.\n\n    Second paragraph\n    - item one\n    - item two") == \
        "First line of it and the rest.\n\nSecond paragraph\n- item one\n- item two"
    assert _join_lines("Steps:\n    1. collect\n    2. train\n      indented code\n    and on.") == \
        "Steps:\n1. collect\n2. train\n  indented code and on."
    import tyro
    assert tyro._strings.remove_single_line_breaks is not _join_lines  # only while a command parses its flags
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = script_in_process("il.py", "--help")
    assert code == 0
    # two source lines of --extra-datasets' docstring, on one line of --help
    assert "names of shipped datasets (e.g. textworld_express:twc). Each keeps its own splits" in out


@pytest.mark.parametrize("script", ["il.py", "rl_iter.py", "evaluate.py", "collect.py", "sweep.py"])
def test_help_fits_an_80_column_terminal_description_included(monkeypatch, script_in_process, script):
    """tyro prints a command's description as given: each paragraph is wrapped to the terminal, not one long line."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = script_in_process(script, "--help")
    assert code == 0
    description = out.split("\n\n")[1]
    assert len(description.splitlines()) >= 2, description
    assert max(len(line) for line in out.splitlines()) <= 80, max(out.splitlines(), key=len)


def test_every_commands_flags_parse_without_importing_jax():
    """run_cli imports a command's config module, parses and checks the flags, and only then imports its code: a
    mistyped flag is reported in about a second, not after seconds of JAX (and torch, pandas) imports."""
    scripts = sorted((ROOT / "experiments").glob("*.py"))
    configs = set()
    for script in scripts:
        configs.update(re.findall(r'run_cli\("[^"]+", "([^"]+)"[,)]', script.read_text()))
    assert len(configs) >= 8, configs  # il, rl_iter, evaluate, collect, sweep, calibrate, research tools
    heavy = ("jax", "flax", "optax", "orbax", "torch", "pandas", "matplotlib")
    for config in sorted(configs):
        module = config.partition(":")[0]
        proc = subprocess.run([sys.executable, "-c", f"import sys, {module}\n"
                               f"print(sorted(m for m in {heavy!r} if m in sys.modules))"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0 and proc.stdout.strip() == "[]", (config, proc.stdout, proc.stderr[-1000:])


def test_tables_written_to_a_file_take_columns_from_the_environment(monkeypatch):
    from hera_jax.cli import report_console

    monkeypatch.setenv("COLUMNS", "80")
    assert report_console(160).width == 80  # COLUMNS=80 python experiments/evaluate.py > log
    monkeypatch.delenv("COLUMNS")
    assert report_console(160).width == 160  # a log viewer shows wide tables whole
