"""Issue 29, third probe: a run folder's JSON files damaged or emptied, a checkpoint that moved or changed under a
resumed evaluation, a key passed through a mistyped flag, a cut checkpoint loaded by a command. Each ends in one
line that says what is wrong and what to do, and no key is echoed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from hera_jax.cli import key_argument_problem, run_cli
from hera_jax.errors import HeraError
from hera_jax.evaluate.evaluate_app import EvalConfig, check_same_routers, replay
from hera_jax.evaluate.routers import router_training
from hera_jax.features import FeatureSpec
from hera_jax.files import read_json_object
from hera_jax.rollout.records import append_episode, write_json_atomic
from hera_jax.router.checkpoint import save_router
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import TrainConfig
from hera_jax.runs import RunFolderError, check_resume, config_json
from tests.conftest import ROOT
from tests.test_evaluate_report import constructed_rollouts

KEY = "sk-" + "proj" + "A1b2C3d4E5f6G7h8I9j0K1l2"

DAMAGED = {"cut": '{"config": {"env": "scienceworld", ', "a list": "[]", "a number": "3", "not utf-8": b"\xff\xfe{"}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_json_file_is_one_line_naming_it_and_the_fix(tmp_path, damage):
    path = tmp_path / "config.json"
    content = DAMAGED[damage]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(HeraError) as error:
        read_json_object(path, "the run's settings", "restore it")
    message = str(error.value)
    assert message.startswith(f"{path}: ") and message.endswith("; restore it") and "\n" not in message
    path.write_text('{"env": "twc"}')
    assert read_json_object(path, "the run's settings", "restore it") == {"env": "twc"}


@pytest.mark.parametrize("damaged_file", ["metrics.json", "config.json"])
def test_a_router_whose_run_files_are_damaged_is_refused_in_one_line(tmp_path, damaged_file):
    checkpoint = tmp_path / "run" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint.parent / damaged_file).write_text("[]")
    with pytest.raises(HeraError, match=rf"{damaged_file}: holds a JSON list, not the (IL|RL) run's"):
        router_training(checkpoint, {})
    (checkpoint.parent / damaged_file).write_text('{"trained_on": [{"env": "twc"}], "env": "twc"}')
    assert router_training(checkpoint, {})[0]["env"] == "twc" if damaged_file == "metrics.json" else True


@pytest.mark.parametrize("config_text", ["{not json", "[]"])
def test_replay_from_a_folder_with_a_damaged_config_is_one_line(tmp_path, config_text):
    run = tmp_path / "run"
    append_episode(run / "rollouts.jsonl", constructed_rollouts())
    (run / "config.json").write_text(config_text)
    with pytest.raises(HeraError, match=r"config\.json: .*the evaluation's settings.*delete it to replay"):
        replay(EvalConfig(replay_from=run, out=tmp_path / "out"), console=None)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_resumed_evaluation_may_name_the_step_it_started_with(tmp_path):
    """The refusal's advice works: --routers il=DIR@STEP resumes a run started with il=DIR at that step."""
    write_json_atomic(tmp_path / "config.json", {"config": config_json(EvalConfig(routers=("il=ckpt",)))})
    check_resume(tmp_path, EvalConfig(routers=("il=ckpt@3",)),
                 stored=read_json_object(tmp_path / "config.json", "settings", "restore it")["config"])
    check_same_routers(tmp_path, {"routers": {"il": "ckpt@3"}}, {"il": {"checkpoint": "ckpt@3", "params_sha256": None}})


def test_a_resumed_evaluation_refuses_a_router_whose_checkpoint_moved_or_changed(tmp_path):
    recorded = {"routers": {"il": "ckpt@3", "rl": "rl@1"}, "router_params_sha256": {"il": "aa", "rl": None}}
    same = {"il": {"checkpoint": "ckpt@3", "params_sha256": "aa"}, "rl": {"checkpoint": "rl@1", "params_sha256": "cc"}}
    check_same_routers(tmp_path, recorded, same)  # an old router without a digest compares by step alone
    check_same_routers(tmp_path, {}, same)  # a run folder from before routers were recorded
    moved = {**same, "il": {"checkpoint": "ckpt@5", "params_sha256": "bb"}}
    with pytest.raises(RunFolderError, match=r"router il: the run used ckpt@3, now ckpt@5; resume with the same"):
        check_same_routers(tmp_path, recorded, moved)
    with pytest.raises(RunFolderError, match=r"routers: the run has il, rl, now il; resume with the same"):
        check_same_routers(tmp_path, recorded, {"il": same["il"]})  # a router dropped or renamed
    retrained = {**same, "il": {"checkpoint": "ckpt@3", "params_sha256": "bb"}}
    with pytest.raises(RunFolderError, match=r"router il: the parameters of ckpt@3 changed since the run started"):
        check_same_routers(tmp_path, recorded, retrained)


@pytest.mark.parametrize("args, where", [
    (["--agents.cloud-api-key", KEY], "argument 2 (after --agents.cloud-api-key)"),  # a flag that does not exist
    (["--engine.fresh-env-per-episode", KEY], "argument 2 (after --engine.fresh-env-per-episode)"),  # a switch
    ([f"--agents.cloud-api-key={KEY}"], "--agents.cloud-api-key"),
    (["--out", "x", KEY], "argument 3"),  # a stray positional value
    (["--out", "x", f"Authorization: Bearer {KEY}"], "argument 3"),
])
def test_a_key_anywhere_on_the_command_line_is_refused_before_parsing_and_never_echoed(args, where, capsys):
    assert key_argument_problem(args).startswith(f"{where} looks like an API key")

    def never_runs(config):
        raise AssertionError("ran")

    with pytest.raises(SystemExit) as exit_:
        run_cli(never_runs, EvalConfig, args=args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"error: {where} looks like an API key") and KEY not in err
    assert err.count("\n") == 1


def test_ordinary_arguments_are_not_taken_for_keys():
    assert key_argument_problem(["--out", "runs/il/2026-12-05T11-21-33/checkpoint", "--routers",
                                 "il=runs/il/x/checkpoint@3", "--tasks", "task-1-boil"]) is None
    # model names without separators: words and numbers, not random characters
    for name in ("Qwen2p5Max20250125Preview", "GPT4oMini20240718Preview", "Llama3p1Instruct70BTurbo2024"):
        assert key_argument_problem(["--agents.cloud-model", name]) is None, name
    assert key_argument_problem(["--agents.cloud-model", "Zx9fK2mQ7vL4pR8s" + "T1wY6uN3bH5jC0dE"]) is not None


def test_a_command_loading_a_cut_checkpoint_prints_only_its_one_line(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=8)
    params = RouterMLP((16,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 0, params, TrainConfig(hidden_sizes=(16,)), spec)
    data = max((p for p in (tmp_path / "ckpt" / "0" / "params").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    script = textwrap.dedent(f"""
        import sys
        from hera_jax.errors import HeraError
        from hera_jax.router.checkpoint import load_router
        try:
            load_router({str(tmp_path / 'ckpt')!r})
        except HeraError as e:
            print(f"error: {{e}}", file=sys.stderr)
            sys.exit(2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "Warning" not in line and line.strip()]
    assert len(lines) == 1 and "cut or damaged" in lines[0], proc.stderr[-3000:]



def test_resuming_an_rl_run_whose_iteration_metrics_are_emptied_is_one_line_naming_the_iteration(tmp_path):
    from hera_jax.rl.run import iter_dir, load_history

    for i in range(2):
        write_json_atomic(iter_dir(tmp_path, i) / "metrics.json", {"iteration": i})
    assert [m["iteration"] for m in load_history(tmp_path)] == [0, 1]
    (iter_dir(tmp_path, 1) / "metrics.json").write_text("")
    with pytest.raises(HeraError) as error:
        load_history(tmp_path)
    message = str(error.value)
    assert message.startswith(str(iter_dir(tmp_path, 1) / "metrics.json")) and "\n" not in message
    assert f"delete {iter_dir(tmp_path, 1)} and the later iter_* folders, and {tmp_path / 'checkpoints' / '1'}" \
        in message
